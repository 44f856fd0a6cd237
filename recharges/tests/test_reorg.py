from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow
from coins.models import CoinConfig
from monitoring.models import Alert, Severity
from recharges import selectors as recharges_selectors
from recharges.models import AccountHold, RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import USDT_ERC20, transfer, tx_hash
from recharges.tests.helpers import available, net_recharged, tick

ONE_ETH = 10**18


class TestShallowReorg:
    def test_marks_a_pending_deposit_of_an_orphaned_block_reorged(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)])
        tick(chain, now)

        chain.reorg(depth=1, branch=[[], []])
        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert record.status == RechargeStatus.REORGED
        assert ScanCursor.objects.get(chain_id="ETH").height == 2
        chain.mine(count=5)
        tick(chain, now)
        assert Flow.objects.count() == 0

    def test_credits_once_a_transaction_re_mined_on_the_new_branch(self, chain, user, now):
        address = deposit_address(user=user)
        deposit = transfer(to=address.address, amount=ONE_ETH)
        chain.mine([deposit])
        chain.mine()
        tick(chain, now)

        chain.reorg(depth=2, branch=[[], [deposit], []])  # same tx, one block later
        chain.mine(count=3)
        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert (record.status, record.block_number, record.generation) == (RechargeStatus.CONFIRMED, 2, 1)
        assert available(user, "ETH") == Decimal(1)
        assert Flow.objects.count() == 1

    def test_a_token_transfer_re_mined_under_another_log_index_is_credited_once(self, chain, user, now):
        address = deposit_address(user=user)
        tx = tx_hash()
        chain.mine([transfer(to=address.address, amount=10**6, tx=tx, index=4, contract=USDT_ERC20)])
        chain.mine(count=2)
        tick(chain, now)
        assert available(user, "USDT-ERC20") == Decimal(1)

        # Deeper than its 3 confirmations: credited, then orphaned, then mined again at log index 0.
        chain.reorg(
            depth=3,
            branch=[[transfer(to=address.address, amount=10**6, tx=tx, index=0, contract=USDT_ERC20)], [], [], []],
        )
        tick(chain, now)

        statuses = dict(RechargeRecord.objects.values_list("log_index", "status"))
        assert statuses == {4: RechargeStatus.REORGED, 0: RechargeStatus.CONFIRMED}
        assert available(user, "USDT-ERC20") == Decimal(1)
        assert net_recharged(user, "USDT-ERC20") == Decimal(1)
        assert assets_selectors.ledger_mismatches() == []

    def test_notices_a_reorg_that_replaces_the_tip_at_the_same_height(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)])
        tick(chain, now)

        chain.reorg(depth=1, branch=[[]])
        tick(chain, now)

        assert RechargeRecord.objects.get().status == RechargeStatus.REORGED

    def test_notices_a_chain_that_got_shorter(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine(count=3)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)])
        tick(chain, now)

        chain.reorg(depth=2, branch=[])
        tick(chain, now)

        assert RechargeRecord.objects.get().status == RechargeStatus.REORGED
        assert ScanCursor.objects.get(chain_id="ETH").height == 2


class TestDeepReorg:
    def test_reverses_a_credited_deposit_and_raises_a_critical_alert(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH)])
        chain.mine(count=3)
        tick(chain, now)
        assert available(user, "ETH") == Decimal(1)

        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert record.status == RechargeStatus.REORGED
        assert available(user, "ETH") == 0
        reversal = Flow.objects.get(business_type=BusinessType.REORG_REVERSAL)
        assert (reversal.biz_ref, reversal.amount) == (record.recharge_no, Decimal(-1))
        alert = Alert.objects.get(kind="DEEP_REORG")
        assert alert.severity == Severity.CRITICAL
        assert recharges_selectors.withdrawals_held(user_id=user.id) is False
        assert assets_selectors.ledger_mismatches() == []

    def test_takes_what_is_left_books_the_rest_as_debt_and_holds_withdrawals_when_the_balance_cannot_cover_it(
        self, chain, user, now
    ):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=3 * ONE_ETH)])
        chain.mine(count=3)
        tick(chain, now)
        eth = CoinConfig.objects.get(coin_id="ETH")
        with transaction.atomic():  # the user spent most of it meanwhile
            assets_services.balance_debit(
                user_id=user.id,
                coin=eth,
                amount=Decimal(2),
                business_type=BusinessType.ADJUSTMENT_DEBIT,
                biz_ref="spent-1",
            )

        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)

        balance = Balance.objects.get(user=user, coin_id="ETH")
        assert (balance.available, balance.frozen, balance.debt) == (Decimal(0), Decimal(0), Decimal(2))
        hold = AccountHold.objects.get()
        assert (hold.amount, hold.reversed_amount, hold.shortfall, hold.debt_amount) == (
            Decimal(3),
            Decimal(1),
            Decimal(2),
            Decimal(2),
        )
        assert recharges_selectors.withdrawals_held(user_id=user.id) is True
        alert = Alert.objects.get(kind="DEEP_REORG")
        assert alert.severity == Severity.CRITICAL
        assert "1 reversed, 2 booked as the user's debt" in alert.message
        assert assets_selectors.ledger_mismatches() == []

    def test_a_deposit_credited_reversed_and_re_mined_is_credited_again_once(self, chain, user, now):
        address = deposit_address(user=user)
        deposit = transfer(to=address.address, amount=ONE_ETH)
        chain.mine([deposit])
        chain.mine(count=3)
        tick(chain, now)

        chain.reorg(depth=4, branch=[[], [deposit], [], [], []])
        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert (record.status, record.generation) == (RechargeStatus.CONFIRMED, 1)
        assert available(user, "ETH") == Decimal(1)
        assert list(Flow.objects.order_by("id").values_list("business_type", "biz_ref")) == [
            (BusinessType.RECHARGE, record.recharge_no),
            (BusinessType.REORG_REVERSAL, record.recharge_no),
            (BusinessType.RECHARGE, f"{record.recharge_no}-g1"),
        ]

    def test_stops_with_a_critical_alert_when_the_fork_is_older_than_the_stored_blocks(
        self, chain, user, settings, now
    ):
        settings.SCAN_RECENT_BLOCKS = 3
        chain.mine(count=8)
        tick(chain, now)

        chain.reorg(depth=6, branch=[[]] * 7)
        tick(chain, now)

        assert Alert.objects.get(kind="REORG_TOO_DEEP").severity == Severity.CRITICAL
        assert ScanCursor.objects.get(chain_id="ETH").height == 8
