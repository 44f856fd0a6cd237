"""Settling re-checks, under the row lock, what the confirmation job verified on the node."""

from __future__ import annotations

from decimal import Decimal

from assets import selectors as assets_selectors
from assets.models import Flow
from recharges import services as recharges_services
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import transfer
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
