"""Which coin a transfer is: a chain's native coin is configured, never inferred from a missing contract."""

from __future__ import annotations

import contextlib
import re
from decimal import Decimal

from django.core.exceptions import ValidationError

from coins import services as coins_services
from coins.models import CoinConfig
from coins.testing import check_constraints_off
from monitoring.models import Alert, Severity
from recharges import services as recharges_services
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import USDT_ERC20, FakeChain, transfer
from recharges.tests.helpers import available, tick


class EvmLikeFakeChain(FakeChain):
    """A fake node whose contract keys are checked like the EVM adapter's (0x + 20 bytes of hex)."""

    def match_key(self, address: str) -> str:
        if not isinstance(address, str) or not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
            raise ValueError("not an EVM address")
        return address.lower()


def misconfigured_alerts() -> list[Alert]:
    return list(Alert.objects.filter(kind="COIN_MISCONFIGURED").order_by("id"))


class TestNativeCoin:
    def test_a_token_saved_without_its_contract_never_turns_ether_into_token_credits(self, chain, user, now):
        # The admin's Save of USDT-ERC20 with its contract cleared.
        usdt = CoinConfig.objects.get(coin_id="USDT-ERC20")
        contract = usdt.contract_address
        usdt.contract_address = ""
        with contextlib.suppress(ValidationError):
            coins_services.coin_save(coin=usdt, changed_fields=["contract_address"])
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=10**14)], count=4)  # 0.0001 ETH

        tick(chain, now)

        assert list(RechargeRecord.objects.values_list("coin_id", "amount")) == [("ETH", Decimal("0.0001"))]
        assert available(user, "USDT-ERC20") == 0
        assert CoinConfig.objects.get(coin_id="USDT-ERC20").contract_address == contract

    def test_a_chain_without_a_native_coin_is_not_scanned_and_ops_get_one_critical_alert(self, chain, user, now):
        CoinConfig.objects.filter(coin_id="ETH").update(chain_id="ETH-RETIRED")
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=10**6, index=0, contract=USDT_ERC20)], count=4)

        tick(chain, now)
        tick(chain, now)

        assert RechargeRecord.objects.count() == 0
        (alert,) = misconfigured_alerts()
        assert (alert.severity, alert.subject) == (Severity.CRITICAL, "chain ETH")
        assert "no native coin" in alert.message

    def test_a_token_with_an_invalid_contract_stops_the_chain_instead_of_being_skipped(self, db, settings, user, now):
        settings.SCAN_START_HEIGHTS = {"ETH": 0}
        CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=3)
        CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address="0xnot-a-contract")
        chain = EvmLikeFakeChain("ETH")
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=10**18)], count=4)

        tick(chain, now)

        assert RechargeRecord.objects.count() == 0
        (alert,) = misconfigured_alerts()
        assert "USDT-ERC20" in alert.message and alert.severity == Severity.CRITICAL

    def test_a_token_row_without_contract_written_around_the_database_check_stops_the_chain(self, chain, user, now):
        with check_constraints_off():
            CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=None)
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=10**14)], count=4)

        tick(chain, now)

        assert RechargeRecord.objects.count() == 0
        (alert,) = misconfigured_alerts()
        assert "USDT-ERC20" in alert.message

    def test_a_rescan_of_an_ambiguous_chain_records_nothing(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine(count=4)
        tick(chain, now)  # the cursor passes the blocks while the coins are right
        chain.mine([transfer(to=address.address, amount=10**18)], count=1)
        tick(chain, now)
        RechargeRecord.objects.all().delete()
        CoinConfig.objects.filter(coin_id="ETH").update(chain_id="ETH-RETIRED")

        result = recharges_services.deposits_rescan_range(
            chain_id="ETH", from_height=0, to_height=10, now=now, adapter=chain
        )

        assert result.deposits == 0 and result.error is not None and "no native coin" in result.error
        assert RechargeRecord.objects.count() == 0
        assert len(misconfigured_alerts()) == 1

    def test_a_correctly_configured_chain_credits_native_and_token_deposits(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine(
            [
                transfer(to=address.address, amount=10**16),  # 0.01 ETH
                transfer(to=address.address, amount=5 * 10**6, index=0, contract=USDT_ERC20),
            ],
            count=4,
        )

        tick(chain, now)

        assert set(RechargeRecord.objects.values_list("coin_id", "status")) == {
            ("ETH", RechargeStatus.CONFIRMED),
            ("USDT-ERC20", RechargeStatus.CONFIRMED),
        }
        assert misconfigured_alerts() == []
