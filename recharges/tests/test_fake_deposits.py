"""Fake deposits: the holes exchanges lost money through. Each must credit nothing."""

from __future__ import annotations

import logging

from assets.models import Flow
from coins.models import CoinConfig
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import LOOKALIKE_USDT, USDT_ERC20, FakeChain, transfer
from recharges.tests.helpers import available, tick

TRC20_USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
TRC20_LOOKALIKE = "TXLAQ63Xg1NAzckPwKHvzw7CSEmLMEqcdj"


class TestFakeDeposits:
    def test_a_reverted_erc20_transfer_credits_nothing(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=10**9, index=0, contract=USDT_ERC20, success=False)], count=4)

        tick(chain, now)

        assert RechargeRecord.objects.count() == 0
        assert Flow.objects.count() == 0

    def test_a_token_with_the_same_symbol_from_another_contract_credits_nothing_and_is_logged(
        self, chain, user, now, caplog
    ):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=10**9, index=0, contract=LOOKALIKE_USDT)], count=4)

        with caplog.at_level(logging.INFO, logger="recharges.services"):
            tick(chain, now)

        assert RechargeRecord.objects.count() == 0
        assert available(user, "USDT-ERC20") == 0
        ignored = [r for r in caplog.records if "not configured" in r.getMessage()]
        assert len(ignored) == 1
        assert LOOKALIKE_USDT in ignored[0].getMessage()

    def test_the_configured_contract_counts_whatever_its_letter_case(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine(
            [transfer(to=address.address, amount=10**6, index=0, contract=USDT_ERC20.upper().replace("0X", "0x"))]
        )
        chain.mine(count=3)

        tick(chain, now)

        assert RechargeRecord.objects.get().status == RechargeStatus.CONFIRMED

    def test_a_failed_tron_contract_credits_nothing(self, db, settings, user, now):
        settings.SCAN_START_HEIGHTS = {"TRON": 0}
        CoinConfig.objects.filter(chain_id="TRON").update(required_confirmations=2)
        tron = FakeChain("TRON", case_insensitive=False)
        address = "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"
        deposit_address(user=user, chain_id="TRON", address=address)
        tron.mine(
            [
                transfer(to=address, key=address, amount=5 * 10**6, index=0, contract=TRC20_USDT, success=False),
                transfer(to=address, key=address, amount=5 * 10**6, success=False),  # TRX, contractRet REVERT
                transfer(to=address, key=address, amount=5 * 10**6, index=1, contract=TRC20_LOOKALIKE),
            ]
        )
        tron.mine([transfer(to=address, key=address, amount=3 * 10**6, index=0, contract=TRC20_USDT)], count=3)

        tick(tron, now)

        assert list(RechargeRecord.objects.values_list("coin_id", "status")) == [
            ("USDT-TRC20", RechargeStatus.CONFIRMED)
        ]
        assert available(user, "USDT-TRC20") == 3
        assert available(user, "TRX") == 0

    def test_a_btc_output_in_an_orphaned_block_credits_nothing(self, db, settings, user, now):
        settings.SCAN_START_HEIGHTS = {"BTC": 0}
        CoinConfig.objects.filter(chain_id="BTC").update(required_confirmations=3)
        btc = FakeChain("BTC", case_insensitive=False)
        script = "0014" + "11" * 20
        deposit_address(user=user, chain_id="BTC", address="bcrt1qzyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3sd5jzt")
        btc.match_key = lambda address: script if address.startswith("bcrt1") else address  # by scriptPubKey
        btc.mine([transfer(to="bcrt1q...", key=script, amount=10**8, index=0)])
        tick(btc, now)
        assert RechargeRecord.objects.get().status == RechargeStatus.PENDING

        btc.reorg(depth=1, branch=[[], [], [], []])  # the output's block loses; the output is never re-mined
        tick(btc, now)

        assert RechargeRecord.objects.get().status == RechargeStatus.REORGED
        assert Flow.objects.count() == 0
