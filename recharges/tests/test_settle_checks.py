"""Settling re-checks, under the row lock, what the confirmation job verified on the node."""

from __future__ import annotations

from decimal import Decimal

import pytest

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import BusinessType, Flow
from coins.models import CoinConfig
from monitoring.models import Alert, Severity
from recharges import services as recharges_services
from recharges import watchlist
from recharges.models import RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.conftest import deposit_address, make_user
from recharges.tests.fakechain import USDT_ERC20, eth_address, transfer
from recharges.tests.helpers import available, tick

ONE_ETH = 10**18


def scan_until_caught_up(chain, now) -> None:
    for _ in range(20):
        result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        if result.error is not None or (result.caught_up and result.fork_point is None):
            return


class TestSettleRechecksTheVerifiedBlock:
    def test_a_deposit_revived_in_another_block_between_check_and_settle_is_not_credited(self, chain, user, now):
        address = deposit_address(user=user).address
        deposit = transfer(to=address, amount=ONE_ETH)
        chain.mine([deposit])
        chain.mine(count=2)  # height 1 with 3 confirmations at tip 3: due
        scan_until_caught_up(chain, now)
        record = RechargeRecord.objects.get()
        checked_hash = record.block_hash

        def scanner_runs_after_the_check(step: str) -> None:
            if step != "confirm.checked" or chain.tip_height() != 3:
                return
            # The confirmation job has verified (height 1, checked_hash) on the node. Now a reorg:
            # the scanner orphans the deposit, and the next batch finds it again at height 4.
            chain.reorg(depth=3, branch=[[], [], [], [deposit]])
            scan_until_caught_up(chain, now)

        recharges_services.fault_hook = scanner_runs_after_the_check
        result = recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain)
        recharges_services.fault_hook = None

        record.refresh_from_db()
        assert (record.status, record.block_number, record.generation) == (RechargeStatus.PENDING, 4, 1)
        assert record.block_hash != checked_hash
        assert result.credited == 0
        assert Flow.objects.count() == 0
        assert available(user, "ETH") == Decimal(0)

        # It is credited once it has its own confirmations on the block it now sits in.
        chain.mine(count=2)
        tick(chain, now)
        record.refresh_from_db()
        assert (record.status, record.confirmations) == (RechargeStatus.CONFIRMED, 3)
        assert available(user, "ETH") == Decimal(1)
        assert assets_selectors.ledger_mismatches() == []

    def test_a_pending_deposit_moved_to_another_block_is_skipped(self, chain, user, now):
        address = deposit_address(user=user).address
        chain.mine([transfer(to=address, amount=ONE_ETH)], count=3)
        scan_until_caught_up(chain, now)
        record = RechargeRecord.objects.get()
        verified = {record.id: (record.block_hash, record.generation)}
        RechargeRecord.objects.filter(id=record.id).update(block_number=3, block_hash="0x" + "cd" * 32)

        assert recharges_services.deposits_settle(verified=verified, tip=3, now=now) == {}
        record.refresh_from_db()
        assert record.status == RechargeStatus.PENDING
        assert Flow.objects.count() == 0

    def test_a_deposit_short_of_its_confirmations_at_the_tip_is_skipped(self, chain, user, now):
        address = deposit_address(user=user).address
        chain.mine([transfer(to=address, amount=ONE_ETH)], count=3)
        scan_until_caught_up(chain, now)
        record = RechargeRecord.objects.get()
        verified = {record.id: (record.block_hash, record.generation)}

        assert recharges_services.deposits_settle(verified=verified, tip=2, now=now) == {}
        assert recharges_services.deposits_settle(verified=verified, tip=3, now=now) == {
            record.id: RechargeStatus.CONFIRMED
        }
        assert available(user, "ETH") == Decimal(1)


class TestOneBadDepositDoesNotBlockTheOthers:
    def test_a_deposit_the_ledger_refuses_stays_pending_and_alerted_while_the_others_are_credited(
        self, chain, user, now
    ):
        other = make_user("bob")
        good = deposit_address(user=user, n=1).address
        bad = deposit_address(user=other, n=2).address
        chain.mine(
            [
                transfer(to=good, amount=ONE_ETH),
                transfer(to=bad, amount=ONE_ETH, index=1),
                transfer(to=good, amount=2 * 10**6, contract=USDT_ERC20, index=0),
            ],
            count=3,
        )
        scan_until_caught_up(chain, now)
        # The ledger refuses one line: its reference is already booked differently (here for
        # another user), so balance_credit_batch raises FlowConflict and rolls the batch back.
        refused = RechargeRecord.objects.get(user=other)
        assets_services.balance_credit(
            user_id=user.id,
            coin=CoinConfig.objects.get(coin_id="ETH"),
            amount=Decimal(5),
            business_type=BusinessType.RECHARGE,
            biz_ref=refused.biz_ref,
        )

        result = recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain)

        refused.refresh_from_db()
        assert (result.credited, result.waiting) == (2, 1)
        assert available(user, "ETH") == Decimal(6)
        assert available(user, "USDT-ERC20") == Decimal(2)
        assert refused.status == RechargeStatus.PENDING
        assert available(other, "ETH") == Decimal(0)
        alert = Alert.objects.get(kind="RECHARGE_SETTLE_FAILED")
        assert alert.severity == Severity.CRITICAL
        assert alert.subject == f"deposit {refused.recharge_no}"
        assert refused.recharge_no in alert.message

        # Every tick tries it again, alone, and counts one more occurrence; nothing else changes.
        recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain)
        alert.refresh_from_db()
        assert alert.count == 2
        assert Flow.objects.count() == 3
        assert assets_selectors.ledger_mismatches() == []


@pytest.mark.mysql
class TestARejectedDepositRowStopsTheBatch:
    def test_a_deposit_row_rejected_for_another_reason_than_its_key_rolls_the_batch_back(self, chain, user, now):
        address = deposit_address(user=user).address
        ghost = eth_address(77)  # watched for a user id that does not exist: its row breaks the foreign key
        chain.mine([transfer(to=address, amount=ONE_ETH), transfer(to=ghost, amount=ONE_ETH, index=1)], count=2)
        watch, _version = watchlist.watchlist_get(chain_id="ETH", adapter=chain)
        watch[ghost] = (10**9, ghost)

        result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)

        assert "rejected by the database" in result.error
        assert ScanCursor.objects.get(chain_id="ETH").height == -1  # created below the start, not moved
        assert RechargeRecord.objects.count() == 0
        alert = Alert.objects.get(kind="DEPOSIT_NOT_STORED")
        assert (alert.severity, alert.subject) == (Severity.CRITICAL, "chain ETH")

        # Every tick stops at the same block and counts the alert again.
        recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        alert.refresh_from_db()
        assert alert.count == 2
        assert ScanCursor.objects.get(chain_id="ETH").height == -1
