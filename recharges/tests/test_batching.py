"""Batches: a range of blocks in one transaction, confirmations checked along the stored hash chain,
deposits settled many per transaction, and deposits above the coin's maximum held back."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig
from monitoring.models import Alert
from recharges import services as recharges_services
from recharges.models import RecentBlock, RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import RangeFakeChain, transfer
from recharges.tests.helpers import available, tick

ONE_ETH = 10**18
POOL_ADDRESS = "0x" + "a1" * 20


class TestScanBatch:
    def test_reads_a_range_in_one_call_and_commits_it_with_one_cursor_move(self, chain, user, now):
        node = RangeFakeChain("ETH")
        address = deposit_address(user=user).address
        for i in range(10):
            node.mine([transfer(to=address, amount=(i + 1) * ONE_ETH)])

        result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=node)

        cursor = ScanCursor.objects.get(chain_id="ETH")
        assert (result.blocks, result.deposits, cursor.height) == (11, 10, 10)
        assert node.range_calls == 1 and node.calls["block"] == 11  # blocks() reads through block()
        assert cursor.version == 1  # one compare-and-set for the whole batch
        assert list(RecentBlock.objects.order_by("height").values_list("height", "hash")) == [
            (b.number, b.hash) for b in node.mined
        ]
        assert sorted(RechargeRecord.objects.values_list("block_number", flat=True)) == list(range(1, 11))

    def test_a_malformed_block_inside_a_range_keeps_the_blocks_before_it(self, chain, user, now):
        node = RangeFakeChain("ETH")
        address = deposit_address(user=user).address
        for _ in range(5):
            node.mine([transfer(to=address, amount=ONE_ETH)])
        node.garbage_heights = {4}

        result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=node)

        assert "block(4)" in result.error
        assert ScanCursor.objects.get(chain_id="ETH").height == 3
        assert sorted(RechargeRecord.objects.values_list("block_number", flat=True)) == [1, 2, 3]

        node.garbage_heights = set()
        tick(node, now)
        assert sorted(RechargeRecord.objects.values_list("block_number", flat=True)) == [1, 2, 3, 4, 5]


class TestConfirmBatch:
    def test_checks_every_due_height_with_one_block_hash_call_and_stores_each_count(self, chain, user, now):
        address = deposit_address(user=user).address
        for _ in range(8):
            chain.mine([transfer(to=address, amount=ONE_ETH)])
        chain.mine(count=2)  # tip 10: blocks 1..8 have 3..10 confirmations
        recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        before = chain.calls["block_hash"]

        result = recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain)

        assert result.credited == 8
        assert chain.calls["block_hash"] - before == 1
        assert sorted(RechargeRecord.objects.values_list("block_number", "confirmations")) == [
            (h, 10 - h + 1) for h in range(1, 9)
        ]
        assert set(RechargeRecord.objects.values_list("confirm_time", flat=True)) == {now}
        assert available(user, "ETH") == Decimal(8)
        assert OutboxMessage.objects.filter(tags="WALLET_RECHARGE").count() == 8
        assert assets_selectors.ledger_mismatches() == []

    def test_a_node_that_reorged_before_the_scanner_noticed_credits_only_the_blocks_it_still_has(
        self, chain, user, now
    ):
        address = deposit_address(user=user).address
        for _ in range(5):
            chain.mine([transfer(to=address, amount=ONE_ETH)])
        chain.mine(count=3)  # tip 8: every deposit due at 3 confirmations
        recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        chain.reorg(depth=5, branch=[[]] * 6)  # blocks 4..8 replaced; the scanner has not seen it

        result = recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain)

        assert (result.credited, result.waiting) == (3, 2)
        assert available(user, "ETH") == Decimal(3)

        tick(chain, now)
        assert RechargeRecord.objects.filter(status=RechargeStatus.REORGED).count() == 2
        assert available(user, "ETH") == Decimal(3)
        assert assets_selectors.ledger_mismatches() == []

    def test_settling_skips_rows_no_longer_pending_and_a_replay_credits_nothing(self, chain, user, now):
        address = deposit_address(user=user).address
        chain.mine([transfer(to=address, amount=ONE_ETH, index=i) for i in range(4)], count=3)
        recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        ids = list(RechargeRecord.objects.order_by("id").values_list("id", flat=True))
        with transaction.atomic():
            RechargeRecord.objects.filter(id=ids[0]).update(status=RechargeStatus.REORGED)

        verified = dict(
            (row[0], (row[1], row[2]))
            for row in RechargeRecord.objects.filter(id__in=ids).values_list("id", "block_hash", "generation")
        )
        first = recharges_services.deposits_settle(verified=verified, tip=3, now=now)
        again = recharges_services.deposits_settle(verified=verified, tip=3, now=now)

        assert first == {i: RechargeStatus.CONFIRMED for i in ids[1:]}
        assert again == {}
        assert available(user, "ETH") == Decimal(3)
        assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 3
        assert assets_selectors.ledger_mismatches() == []


class TestAboveMaximum:
    def test_a_deposit_above_the_maximum_is_recorded_not_credited_and_alerted(self, chain, user, now):
        CoinConfig.objects.filter(coin_id="ETH").update(max_recharge_amount=Decimal(5))
        address = deposit_address(user=user).address
        chain.mine([transfer(to=address, amount=6 * ONE_ETH), transfer(to=address, amount=5 * ONE_ETH, index=0)])
        chain.mine(count=2)

        tick(chain, now)

        statuses = dict(RechargeRecord.objects.values_list("amount", "status"))
        assert statuses == {Decimal(6): RechargeStatus.ABOVE_MAXIMUM, Decimal(5): RechargeStatus.CONFIRMED}
        assert available(user, "ETH") == Decimal(5)
        alert = Alert.objects.get(kind="RECHARGE_ABOVE_MAXIMUM")
        assert "above the maximum of 5" in alert.message


class TestWatchListRefresh:
    def test_an_incremental_refresh_is_one_query_and_sees_a_pool_row_assigned_late(
        self, chain, user, other_user, django_assert_num_queries
    ):
        from django.utils import timezone

        from addresses.models import AddressType, WalletAddress
        from recharges import watchlist

        pool_row = WalletAddress.objects.create(  # an unassigned pool row, older than the next one
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT, address=POOL_ADDRESS
        )
        deposit_address(user=user, n=7)  # a higher id, assigned first
        keys, version = watchlist.watchlist_get(chain_id="ETH", adapter=chain)
        assert set(keys) == {"0x" + f"{7:040x}"}

        pool_row.user, pool_row.assign_time = other_user, timezone.now()
        pool_row.save(update_fields=["user", "assign_time"])
        with django_assert_num_queries(1):
            keys, newer = watchlist.watchlist_get(chain_id="ETH", adapter=chain)

        assert keys[POOL_ADDRESS] == (other_user.id, POOL_ADDRESS)
        assert newer > version


class TestLateAssignment:
    def test_a_full_reload_that_finds_an_address_the_refreshes_missed_rescans_the_blocks_it_may_have_missed(
        self, chain, user, other_user, now, settings
    ):
        from datetime import timedelta

        from django.utils import timezone

        from addresses.models import AddressType, WalletAddress

        settings.SCAN_WATCH_LOOKBACK_SECONDS = 0
        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 3600
        pool_row = WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT, address=POOL_ADDRESS
        )
        deposit_address(user=user, n=7)
        chain.mine()
        tick(chain, now)  # the watch list is loaded in full
        # The pool row is handed out by a transaction that commits long after its assign_time.
        pool_row.user, pool_row.assign_time = other_user, timezone.now() - timedelta(hours=1)
        pool_row.save(update_fields=["user", "assign_time"])
        chain.mine([transfer(to=POOL_ADDRESS, amount=ONE_ETH)], count=4)
        tick(chain, now)
        assert RechargeRecord.objects.count() == 0  # the incremental refreshes missed it

        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 0
        chain.mine()
        tick(chain, now)
        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert (record.user_id, record.to_address, record.status) == (
            other_user.id,
            POOL_ADDRESS,
            RechargeStatus.CONFIRMED,
        )
        assert available(other_user, "ETH") == Decimal(1)

    def test_a_reorg_below_the_previous_reload_is_covered_by_the_rescan(self, chain, user, other_user, now, settings):
        from datetime import timedelta

        from django.utils import timezone

        from addresses.models import AddressType, WalletAddress

        settings.SCAN_WATCH_LOOKBACK_SECONDS = 0
        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 3600
        pool_row = WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT, address=POOL_ADDRESS
        )
        deposit_address(user=user, n=7)
        chain.mine(count=5)
        tick(chain, now)
        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 0
        chain.mine()
        tick(chain, now)  # a full reload with the cursor at 5
        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 3600
        pool_row.user, pool_row.assign_time = other_user, timezone.now() - timedelta(hours=1)
        pool_row.save(update_fields=["user", "assign_time"])
        # A reorg back to 3; the late address is paid at the new height 4, below the reload's 5.
        chain.reorg(depth=3, branch=[[transfer(to=POOL_ADDRESS, amount=ONE_ETH)], [], [], [], []])
        tick(chain, now)
        assert RechargeRecord.objects.count() == 0

        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 0
        chain.mine()
        tick(chain, now)
        tick(chain, now)

        assert RechargeRecord.objects.get().to_address == POOL_ADDRESS
        assert available(other_user, "ETH") == Decimal(1)

    def test_a_long_rescan_runs_a_batch_at_a_time_until_done(self, chain, user, other_user, now, settings):
        from datetime import timedelta

        from django.utils import timezone

        from addresses.models import AddressType, WalletAddress

        settings.SCAN_WATCH_LOOKBACK_SECONDS = 0
        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 3600
        settings.SCAN_BATCH_BLOCKS = 2
        pool_row = WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT, address=POOL_ADDRESS
        )
        deposit_address(user=user, n=7)
        chain.mine()
        tick(chain, now)
        pool_row.user, pool_row.assign_time = other_user, timezone.now() - timedelta(hours=1)
        pool_row.save(update_fields=["user", "assign_time"])
        chain.mine(count=6)
        chain.mine([transfer(to=POOL_ADDRESS, amount=ONE_ETH)], count=4)  # paid at height 7
        tick(chain, now)
        assert RechargeRecord.objects.count() == 0

        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 0
        chain.mine()
        read_before = chain.calls.get("block", 0)
        recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        settings.SCAN_WATCH_FULL_RELOAD_SECONDS = 3600
        assert chain.calls.get("block", 0) - read_before <= 2 + 2  # the new block(s) and one rescan batch
        assert RechargeRecord.objects.count() == 0  # height 7 is not reached yet
        for _ in range(6):
            recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)

        assert RechargeRecord.objects.get().to_address == POOL_ADDRESS
