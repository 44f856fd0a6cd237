"""A reorg the balance cannot cover: the shortfall becomes the user's debt, repaid first by their later credits."""

from __future__ import annotations

import itertools
from decimal import Decimal

from django.db import transaction

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, HouseFlow, OutboxMessage
from coins.models import CoinConfig
from monitoring.models import Alert
from recharges import selectors as recharges_selectors
from recharges.models import AccountHold, HoldStatus, RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import transfer
from recharges.tests.helpers import tick

ONE_ETH = 10**18


def position(user, coin_id: str = "ETH") -> tuple[Decimal, Decimal, Decimal]:
    """(available, frozen, debt) of the user's balance."""
    row = Balance.objects.filter(user=user, coin_id=coin_id).first()
    return (row.available, row.frozen, row.debt) if row else (Decimal(0), Decimal(0), Decimal(0))


def owns(user, coin_id: str = "ETH") -> Decimal:
    """What the ledger says the user owns: available + frozen - debt."""
    available, frozen, debt = position(user, coin_id)
    return available + frozen - debt


def withdraw_settled(user, amount: Decimal, ref: str) -> None:
    """A withdrawal of amount, frozen at apply and paid out: the ledger's two postings."""
    eth = CoinConfig.objects.get(coin_id="ETH")
    with transaction.atomic():
        assets_services.balance_freeze(
            user_id=user.id, coin=eth, amount=amount, business_type=BusinessType.WITHDRAW_FREEZE, biz_ref=ref
        )
        assets_services.balance_settle_frozen(
            user_id=user.id, coin=eth, amount=amount, business_type=BusinessType.WITHDRAW_SETTLE, biz_ref=ref
        )


def ledger_is_consistent() -> None:
    """Σ flows = balance for every column, flows chain, events one per flow."""
    assert assets_selectors.ledger_mismatches() == []
    for balance in Balance.objects.all():
        flows = list(Flow.objects.filter(user_id=balance.user_id, coin_id=balance.coin_id).order_by("id"))
        for before, after in itertools.pairwise(flows):
            assert after.balance_before == before.balance_after
            assert after.frozen_before == before.frozen_after
            assert after.debt_before == before.debt_after
        assert balance.available >= 0 and balance.frozen >= 0 and balance.debt >= 0
        assert balance.debt == 0 or balance.available == 0
    # One event per flow, a user's or the house's (a written-off loss is a house flow).
    assert OutboxMessage.objects.filter(tags="ASSET_CHANGE").count() == Flow.objects.count() + HouseFlow.objects.count()
    assert assets_selectors.house_mismatches() == []


class TestShortfallThenReMined:
    def test_the_issue_scenario_ends_with_the_user_owning_exactly_what_is_left(self, chain, user, now):
        address = deposit_address(user=user)
        deposit = transfer(to=address.address, amount=3 * ONE_ETH)
        chain.mine([deposit])
        chain.mine(count=3)
        tick(chain, now)
        withdraw_settled(user, Decimal(2), "W1")
        assert position(user) == (Decimal(1), 0, 0)

        chain.reorg(depth=4, branch=[[], [], [], [], []])  # deeper than its confirmations
        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert record.status == RechargeStatus.REORGED
        assert position(user) == (0, 0, Decimal(2))
        assert owns(user) == Decimal(-2)
        hold = AccountHold.objects.get()
        assert (hold.status, hold.amount, hold.reversed_amount, hold.debt_amount, hold.frozen_amount) == (
            HoldStatus.ACTIVE,
            Decimal(3),
            Decimal(1),
            Decimal(2),
            Decimal(0),
        )
        assert recharges_selectors.withdrawals_held(user_id=user.id) is True
        recharge_events = [
            m.payload["body"] for m in OutboxMessage.objects.filter(tags="WALLET_RECHARGE").order_by("id")
        ]
        assert [(e["recharge_no"], e["status"]) for e in recharge_events] == [
            (record.recharge_no, RechargeStatus.CONFIRMED),
            (record.recharge_no, RechargeStatus.REORGED),
        ]
        debt = Flow.objects.get(business_type=BusinessType.REORG_DEBT)
        assert (debt.biz_ref, debt.amount, debt.debt_amount, debt.debt_after) == (record.biz_ref, 0, 2, 2)
        event = OutboxMessage.objects.get(keys=debt.flow_no).payload["body"]
        assert (event["business_type"], event["debt_amount"], event["debt_before"], event["debt_after"]) == (
            10,
            "2",
            "0",
            "2",
        )
        ledger_is_consistent()

        chain.mine([deposit])  # the same transaction, mined again on the new branch
        chain.mine(count=3)
        tick(chain, now)

        record.refresh_from_db()
        assert (record.status, record.generation) == (RechargeStatus.CONFIRMED, 1)
        assert position(user) == (Decimal(1), 0, 0)
        assert owns(user) == Decimal(1)
        assert list(Flow.objects.order_by("id").values_list("business_type", "amount", "debt_amount")) == [
            (BusinessType.RECHARGE, 3, 0),
            (BusinessType.WITHDRAW_FREEZE, -2, 0),
            (BusinessType.WITHDRAW_SETTLE, 0, 0),
            (BusinessType.REORG_REVERSAL, -1, 0),
            (BusinessType.REORG_DEBT, 0, 2),
            (BusinessType.RECHARGE, 3, 0),
            (BusinessType.REORG_DEBT_REPAY, -2, -2),
        ]
        hold.refresh_from_db()
        assert (hold.status, hold.resolve_time) == (HoldStatus.REPAID, now)
        assert recharges_selectors.withdrawals_held(user_id=user.id) is False
        ledger_is_consistent()

    def test_a_re_mined_deposit_repays_part_of_a_larger_debt_and_withdrawals_stay_held(self, chain, user, now):
        address = deposit_address(user=user)
        first = transfer(to=address.address, amount=3 * ONE_ETH)
        second = transfer(to=address.address, amount=2 * ONE_ETH)
        chain.mine([first, second])
        chain.mine(count=3)
        tick(chain, now)
        withdraw_settled(user, Decimal(5), "W1")

        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)
        assert position(user) == (0, 0, Decimal(5))
        assert AccountHold.objects.filter(status=HoldStatus.ACTIVE).count() == 2

        chain.mine([first], count=4)  # only the first one comes back
        tick(chain, now)

        assert position(user) == (0, 0, Decimal(2))
        assert recharges_selectors.withdrawals_held(user_id=user.id) is True
        assert AccountHold.objects.filter(status=HoldStatus.ACTIVE).count() == 2
        ledger_is_consistent()

        chain.mine([second], count=4)
        tick(chain, now)

        assert position(user) == (0, 0, 0)
        assert owns(user) == 0
        assert set(AccountHold.objects.values_list("status", flat=True)) == {HoldStatus.REPAID}
        assert recharges_selectors.withdrawals_held(user_id=user.id) is False
        ledger_is_consistent()

    def test_a_second_reorg_of_the_re_mined_deposit_books_the_debt_again_never_a_negative_balance(
        self, chain, user, now
    ):
        address = deposit_address(user=user)
        deposit = transfer(to=address.address, amount=3 * ONE_ETH)
        chain.mine([deposit], count=4)
        tick(chain, now)
        withdraw_settled(user, Decimal(2), "W1")
        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)
        chain.mine([deposit], count=4)
        tick(chain, now)
        assert position(user) == (Decimal(1), 0, 0)

        chain.reorg(depth=4, branch=[[], [], [], [], []])  # the re-mined block is orphaned too
        tick(chain, now)

        record = RechargeRecord.objects.get()
        assert record.status == RechargeStatus.REORGED
        assert position(user) == (0, 0, Decimal(2))
        assert owns(user) == Decimal(-2)
        holds = list(AccountHold.objects.order_by("id").values_list("biz_ref", "status", "debt_amount"))
        assert holds == [
            (record.recharge_no, HoldStatus.REPAID, Decimal(2)),
            (f"{record.recharge_no}-g1", HoldStatus.ACTIVE, Decimal(2)),
        ]
        assert recharges_selectors.withdrawals_held(user_id=user.id) is True
        ledger_is_consistent()

    def test_a_reversal_the_balance_covers_books_no_debt_and_holds_nothing(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=3 * ONE_ETH)], count=4)
        tick(chain, now)

        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)

        assert position(user) == (0, 0, 0)
        assert AccountHold.objects.count() == 0
        assert not Flow.objects.filter(business_type=BusinessType.REORG_DEBT).exists()
        ledger_is_consistent()

    def test_any_deposit_of_the_user_and_coin_repays_the_debt_first(self, chain, user, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=3 * ONE_ETH)], count=4)
        tick(chain, now)
        withdraw_settled(user, Decimal(3), "W1")
        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)
        assert position(user) == (0, 0, Decimal(3))

        chain.mine([transfer(to=address.address, amount=5 * ONE_ETH)], count=4)  # another deposit
        tick(chain, now)

        assert position(user) == (Decimal(2), 0, 0)
        repay = Flow.objects.get(business_type=BusinessType.REORG_DEBT_REPAY)
        assert (repay.amount, repay.debt_amount) == (Decimal(-3), Decimal(-3))
        assert AccountHold.objects.get().status == HoldStatus.REPAID
        assert Alert.objects.filter(kind="DEEP_REORG").exists()
        ledger_is_consistent()
