from __future__ import annotations

from decimal import Decimal

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, OutboxMessage
from recharges import services as recharges_services
from recharges.models import RecentBlock, RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import USDT_ERC20, transfer, tx_hash
from recharges.tests.helpers import available, tick

ONE_ETH = 10**18


class TestDepositsScanBatch:
    def test_records_a_deposit_pending_then_credits_it_at_the_required_confirmations(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=2 * ONE_ETH)])

        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert (record.status, record.amount, record.block_number) == (RechargeStatus.PENDING, Decimal(2), 1)
        assert available(user, "ETH") == 0

        chain.mine(count=2)  # block 1 now has 3 confirmations
        tick(chain, now)

        record.refresh_from_db()
        assert record.status == RechargeStatus.CONFIRMED
        assert record.confirmations == 3
        assert record.confirm_time == now
        assert available(user, "ETH") == Decimal(2)
        flow = Flow.objects.get(business_type=BusinessType.RECHARGE)
        assert (flow.biz_ref, flow.ref_tx_hash) == (record.recharge_no, record.tx_hash)
        message = OutboxMessage.objects.get(tags="WALLET_RECHARGE")
        assert message.payload["body"] == {
            "recharge_no": record.recharge_no,
            "user_id": user.id,
            "coin_id": "ETH",
            "amount": "2",
            "tx_hash": record.tx_hash,
            "status": 2,
            "confirmations": 3,
        }
        assert assets_selectors.ledger_mismatches() == []

    def test_records_every_transfer_of_one_transaction_under_its_own_index(self, chain, user, other_user, now):
        mine, theirs = deposit_address(user=user, n=1), deposit_address(user=other_user, n=2)
        tx = tx_hash()
        chain.mine(
            [
                transfer(to=mine.address, amount=5_000_000, tx=tx, index=0, contract=USDT_ERC20),
                transfer(to=theirs.address, amount=7_000_000, tx=tx, index=1, contract=USDT_ERC20),
                transfer(to=mine.address, amount=1_000_000, tx=tx, index=2, contract=USDT_ERC20),
            ]
        )
        chain.mine(count=2)

        tick(chain, now)

        assert RechargeRecord.objects.filter(tx_hash=tx, status=RechargeStatus.CONFIRMED).count() == 3
        assert available(user, "USDT-ERC20") == Decimal(6)
        assert available(other_user, "USDT-ERC20") == Decimal(7)

    def test_credits_once_when_the_same_blocks_are_scanned_again(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)])
        chain.mine(count=3)
        tick(chain, now)
        cursor = ScanCursor.objects.get(chain_id="ETH")

        # A worker restarted from a stale cursor reads every block again.
        ScanCursor.objects.filter(chain_id="ETH").update(height=0, version=cursor.version + 1)
        RecentBlock.objects.filter(height__gt=0).delete()
        tick(chain, now)
        recharges_services.deposits_rescan_range(chain_id="ETH", from_height=0, to_height=10, now=now, adapter=chain)
        recharges_services.deposits_rescan_range(chain_id="ETH", from_height=0, to_height=10, now=now, adapter=chain)
        tick(chain, now)

        assert RechargeRecord.objects.count() == 1
        assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 1
        assert available(user, "ETH") == Decimal(1)
        assert ScanCursor.objects.get(chain_id="ETH").height == 4

    def test_ignores_transfers_to_addresses_nobody_owns(self, chain, user, now):
        deposit_address(user=user)
        chain.mine([transfer(to="0x" + "99" * 20, amount=ONE_ETH)], count=4)

        tick(chain, now)

        assert RechargeRecord.objects.count() == 0

    def test_sees_an_address_assigned_after_the_watch_list_was_loaded(self, chain, user, other_user, now):
        deposit_address(user=user, n=1)
        tick(chain, now)
        late = deposit_address(user=other_user, n=2)
        chain.mine([transfer(to=late.address, amount=ONE_ETH)], count=3)

        tick(chain, now)

        assert available(other_user, "ETH") == Decimal(1)


class TestDepositsConfirm:
    def test_records_a_deposit_below_the_minimum_without_crediting_it(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=10**14)], count=3)  # 0.0001 ETH < 0.001

        tick(chain, now)

        assert RechargeRecord.objects.get().status == RechargeStatus.BELOW_MINIMUM
        assert Flow.objects.count() == 0

    def test_records_a_deposit_of_a_coin_with_recharge_disabled_and_alerts(self, chain, user, now):
        from coins.models import CoinConfig, Switch
        from monitoring.models import Alert

        CoinConfig.objects.filter(coin_id="ETH").update(recharge_enabled=Switch.DISABLED)
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)], count=3)

        tick(chain, now)

        assert RechargeRecord.objects.get().status == RechargeStatus.RECHARGE_DISABLED
        assert Flow.objects.count() == 0
        assert Alert.objects.filter(kind="RECHARGE_DISABLED", subject="coin ETH").exists() is True

    def test_needs_one_block_hash_call_per_distinct_height_not_per_deposit(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH, index=i, tx=tx_hash()) for i in range(20)])
        chain.mine(count=2)
        recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        before = dict(chain.calls)

        result = recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain)

        assert result.credited == 20
        assert chain.calls["block_hash"] - before["block_hash"] == 1
        assert chain.calls["tip_height"] == before["tip_height"]
        assert chain.calls["block"] == before["block"]


class TestWatchListRace:
    def test_reads_blocks_again_when_an_address_was_assigned_during_the_fetch(self, chain, user, other_user, now):
        from recharges.tests.fakechain import FilteringFakeChain

        node = FilteringFakeChain("ETH")
        deposit_address(user=user, n=1)
        late = "0x" + f"{2:040x}"
        node.mine([transfer(to=late, amount=ONE_ETH)], count=3)

        def assign_during_fetch(step: str) -> None:
            if step == "scan.fetched" and not RechargeRecord.objects.exists():
                recharges_services.fault_hook = None
                deposit_address(user=other_user, n=2)

        recharges_services.fault_hook = assign_during_fetch
        tick(node, now)

        assert available(other_user, "ETH") == Decimal(1)
