"""A crash between any two steps, a node down or talking garbage: never a double or lost credit."""

from __future__ import annotations

from decimal import Decimal

import pytest

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig
from monitoring.models import Alert
from recharges import services as recharges_services
from recharges.models import RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import FakeChain, transfer
from recharges.tests.helpers import available, tick

ONE_ETH = 10**18
STEPS = [
    "scan.fetched",
    "scan.cursor_set",
    "scan.block_written",
    "confirm.checked",
    "settle.locked",
    "settle.credited",
    "settle.written",
    "reorg.fork_found",
    "reorg.written",
]


class Crash(Exception):
    pass


def crash_at(step: str, times: int = 1):
    left = {"n": times}

    def hook(name: str) -> None:
        if name == step and left["n"] > 0:
            left["n"] -= 1
            raise Crash(step)

    return hook


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_then_a_restart_credits_every_deposit_exactly_once(chain, user, now, step):
    address = deposit_address(user=user)
    first = transfer(to=address.address, amount=ONE_ETH)
    chain.mine([first])
    chain.mine(count=2)
    tick(chain, now)  # the first deposit credited
    chain.mine([transfer(to=address.address, amount=2 * ONE_ETH)])
    tick(chain, now)  # the second pending
    chain.reorg(depth=1, branch=[[], []])  # drops the second: a reorg to cross too
    chain.mine([transfer(to=address.address, amount=4 * ONE_ETH)], count=4)

    recharges_services.fault_hook = crash_at(step)
    with pytest.raises(Crash):
        for _ in range(20):
            tick(chain, now)
    recharges_services.fault_hook = None
    for _ in range(3):  # the restarted worker
        tick(chain, now)

    assert available(user, "ETH") == Decimal(5)
    assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 2
    assert OutboxMessage.objects.filter(tags="WALLET_RECHARGE").count() == 2
    assert RechargeRecord.objects.filter(status=RechargeStatus.CONFIRMED).count() == 2
    assert RechargeRecord.objects.filter(status=RechargeStatus.REORGED).count() == 1
    assert assets_selectors.ledger_mismatches() == []


class TestNodeFailures:
    def test_a_node_down_is_alerted_credits_nothing_and_is_retried_next_tick(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)], count=4)
        chain.down = True

        result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        tick(chain, now)

        assert result.error is not None and "connection refused" in result.error
        # Once per failed call: the scan above and the tick's scan (confirm had nothing due).
        assert Alert.objects.get(kind="NODE_DOWN", subject="chain ETH").count == 2
        assert RechargeRecord.objects.count() == 0
        chain.down = False
        tick(chain, now)
        assert available(user, "ETH") == Decimal(1)

    def test_a_malformed_block_is_logged_and_nothing_is_read_past_it(self, chain, user, now, caplog):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)])
        chain.mine([transfer(to=address.address, amount=ONE_ETH)], count=4)
        chain.garbage_heights = {2}

        tick(chain, now)

        assert ScanCursor.objects.get(chain_id="ETH").height == 1
        assert list(RechargeRecord.objects.values_list("block_number", flat=True)) == [1]
        assert "malformed block at height 2" in caplog.text
        chain.garbage_heights = set()
        tick(chain, now)
        assert available(user, "ETH") == Decimal(2)

    def test_a_malformed_transfer_to_a_watched_address_stops_the_block(self, chain, user, now):
        address = deposit_address(user=user)
        bad = transfer(to=address.address, amount=ONE_ETH)
        object.__setattr__(bad, "amount_base_units", "1e18")  # a node answering a string
        chain.mine([bad], count=4)

        tick(chain, now)

        assert RechargeRecord.objects.count() == 0
        assert ScanCursor.objects.get(chain_id="ETH").height == 0
        assert Alert.objects.filter(kind="NODE_DOWN").exists() is True

    def test_one_chain_down_leaves_the_other_chains_scanning(self, chain, user, now, settings):
        settings.SCAN_START_HEIGHTS = {"ETH": 0, "BTC": 0}
        CoinConfig.objects.filter(chain_id="BTC").update(required_confirmations=2)
        btc = FakeChain("BTC", case_insensitive=False)
        deposit_address(user=user, chain_id="BTC", address="bcrt1qdeposit")
        btc.mine([transfer(to="bcrt1qdeposit", key="bcrt1qdeposit", amount=10**7, index=0)], count=2)
        chain.down = True

        for adapter in (chain, btc):
            tick(adapter, now)

        assert available(user, "BTC") == Decimal("0.1")
        assert Alert.objects.filter(kind="NODE_DOWN", subject="chain ETH").exists() is True
        assert Alert.objects.filter(kind="NODE_DOWN", subject="chain BTC").exists() is False
