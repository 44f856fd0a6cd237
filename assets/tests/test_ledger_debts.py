"""Debts in the ledger: a credit taken back beyond the balance, repaid by later credits, cleared by ops."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from assets import debts as assets_debts
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig

Credit = assets_services.Credit


@pytest.fixture
def btc(db) -> CoinConfig:
    return CoinConfig.objects.get(coin_id="BTC")


def post(service, user, coin, amount, business_type, ref):
    with transaction.atomic():
        return service(user_id=user.id, coin=coin, amount=Decimal(amount), business_type=business_type, biz_ref=ref)


def credit(user, coin, amount, ref):
    return post(assets_services.balance_credit, user, coin, amount, BusinessType.RECHARGE, ref)


def reverse(user, coin, amount, ref):
    with transaction.atomic():
        return assets_debts.balance_reverse_credit(user_id=user.id, coin=coin, amount=Decimal(amount), biz_ref=ref)


def owed(user, coin, amount: str) -> None:
    """The user received amount, spent it, and the credit was taken back: amount owed."""
    credit(user, coin, amount, "d-owed")
    post(assets_services.balance_debit, user, coin, amount, BusinessType.ADJUSTMENT_DEBIT, "spent")
    reverse(user, coin, amount, "d-owed")


def columns(user, coin) -> tuple[Decimal, Decimal, Decimal]:
    row = Balance.objects.get(user=user, coin=coin)
    return row.available, row.frozen, row.debt


@pytest.mark.django_db
class TestReverseCredit:
    def test_takes_what_is_available_and_books_the_rest_as_debt_with_an_event_each(self, user, btc):
        credit(user, btc, "3", "d1")
        post(assets_services.balance_debit, user, btc, "2", BusinessType.ADJUSTMENT_DEBIT, "spent")

        reversal = reverse(user, btc, "3", "d1")

        assert (reversal.reversed_amount, reversal.debt_amount) == (Decimal(1), Decimal(2))
        assert columns(user, btc) == (0, 0, Decimal(2))
        debt = reversal.debt
        assert (debt.business_type, debt.amount, debt.debt_after) == (BusinessType.REORG_DEBT, 0, Decimal(2))
        body = OutboxMessage.objects.get(keys=debt.flow_no).payload["body"]
        assert (body["balance_after"], body["debt_amount"], body["debt_after"]) == ("0", "2", "2")
        assert assets_selectors.ledger_mismatches() == []

    def test_a_replay_books_nothing_and_a_different_amount_is_refused(self, user, btc):
        owed(user, btc, "2")
        flows = Flow.objects.count()

        again = reverse(user, btc, "2", "d-owed")
        with pytest.raises(assets_services.FlowConflict):
            reverse(user, btc, "3", "d-owed")

        assert again.debt_amount == Decimal(2) and again.reversed is None
        assert Flow.objects.count() == flows
        assert columns(user, btc) == (0, 0, Decimal(2))

    def test_books_no_debt_when_the_balance_covers_it(self, user, btc):
        credit(user, btc, "3", "d1")

        reversal = reverse(user, btc, "3", "d1")

        assert (reversal.reversed_amount, reversal.debt) == (Decimal(3), None)
        assert columns(user, btc) == (0, 0, 0)


@pytest.mark.django_db
class TestRepayment:
    def test_a_credit_repays_the_debt_first_in_a_flow_of_its_own(self, user, btc):
        owed(user, btc, "2")

        first = credit(user, btc, "0.5", "d2")
        second = credit(user, btc, "3", "d3")

        assert columns(user, btc) == (Decimal("1.5"), 0, 0)
        repays = list(Flow.objects.filter(business_type=BusinessType.REORG_DEBT_REPAY).order_by("id"))
        assert [(r.biz_ref, r.amount, r.debt_amount, r.debt_after) for r in repays] == [
            (first.flow_no, Decimal("-0.5"), Decimal("-0.5"), Decimal("1.5")),
            (second.flow_no, Decimal("-1.5"), Decimal("-1.5"), 0),
        ]
        assert (second.amount, second.balance_after) == (Decimal(3), Decimal(3))  # the credit itself is whole
        assert OutboxMessage.objects.count() == Flow.objects.count()
        assert assets_selectors.ledger_mismatches() == []

    def test_a_replayed_credit_repays_nothing_more(self, user, btc):
        owed(user, btc, "2")
        credit(user, btc, "1", "d2")

        credit(user, btc, "1", "d2")

        assert columns(user, btc) == (0, 0, Decimal(1))
        assert Flow.objects.filter(business_type=BusinessType.REORG_DEBT_REPAY).count() == 1

    def test_an_unfreeze_repays_too_as_a_negative_balance_would(self, user, btc):
        credit(user, btc, "3", "d1")
        post(assets_services.balance_freeze, user, btc, "3", BusinessType.WITHDRAW_FREEZE, "W1")
        reverse(user, btc, "3", "d1")
        assert columns(user, btc) == (0, Decimal(3), Decimal(3))

        post(assets_services.balance_unfreeze, user, btc, "3", BusinessType.WITHDRAW_UNFREEZE, "W1")

        assert columns(user, btc) == (0, 0, 0)

    def test_repaying_costs_a_single_posting_no_extra_round_trip(self, user, other_user, btc):
        owed(user, btc, "2")
        credit(other_user, btc, "1", "warm")

        with CaptureQueriesContext(connection) as plain, transaction.atomic():
            assets_services.balance_credit(
                user_id=other_user.id, coin=btc, amount=Decimal(1), business_type=BusinessType.RECHARGE, biz_ref="x1"
            )
        with CaptureQueriesContext(connection) as repaying, transaction.atomic():
            assets_services.balance_credit(
                user_id=user.id, coin=btc, amount=Decimal(1), business_type=BusinessType.RECHARGE, biz_ref="x2"
            )

        assert len(repaying.captured_queries) == len(plain.captured_queries)
        assert Flow.objects.filter(business_type=BusinessType.REORG_DEBT_REPAY, user=user).count() == 1

    def test_a_batch_repays_the_debts_of_its_users_in_the_same_statements(self, user, other_user, btc):
        owed(user, btc, "2")
        third = get_user_model().objects.create_user(username="carol")
        lines = [
            Credit(user.id, Decimal("0.5"), "b1"),
            Credit(other_user.id, Decimal(1), "b2"),
            Credit(user.id, Decimal(4), "b3"),
            Credit(third.id, Decimal(1), "b4"),
        ]
        credit(other_user, btc, "1", "warm")
        credit(third, btc, "1", "warm-3")
        with CaptureQueriesContext(connection) as no_debt, transaction.atomic():
            assets_services.balance_credit_batch(
                coin=btc,
                business_type=BusinessType.RECHARGE,
                credits=[Credit(other_user.id, Decimal(1), "n1"), Credit(third.id, Decimal(1), "n2")],
            )

        with CaptureQueriesContext(connection) as with_debt, transaction.atomic():
            flows = assets_services.balance_credit_batch(coin=btc, business_type=BusinessType.RECHARGE, credits=lines)

        assert len(with_debt.captured_queries) == len(no_debt.captured_queries)
        assert [f.biz_ref for f in flows] == ["b1", "b2", "b3", "b4"]
        assert (flows.debt_repaid_user_ids, flows.debt_cleared_user_ids) == ({user.id}, {user.id})
        assert columns(user, btc) == (Decimal("2.5"), 0, 0)
        repays = Flow.objects.filter(business_type=BusinessType.REORG_DEBT_REPAY).order_by("id")
        assert [r.amount for r in repays] == [Decimal("-0.5"), Decimal("-1.5")]
        assert OutboxMessage.objects.count() == Flow.objects.count()
        assert assets_selectors.ledger_mismatches() == []


@pytest.mark.django_db
class TestDebtClear:
    @pytest.mark.parametrize("business_type", [BusinessType.REORG_DEBT_SETTLE, BusinessType.REORG_DEBT_WRITE_OFF])
    def test_clears_the_whole_debt_once(self, user, btc, business_type):
        owed(user, btc, "2")

        with transaction.atomic():
            cleared = assets_debts.balance_debt_clear(
                user_id=user.id, coin=btc, business_type=business_type, biz_ref="hold-1", memo="ops"
            )
            again = assets_debts.balance_debt_clear(
                user_id=user.id, coin=btc, business_type=business_type, biz_ref="hold-1"
            )
            nothing = assets_debts.balance_debt_clear(
                user_id=user.id, coin=btc, business_type=business_type, biz_ref="hold-2"
            )

        assert (cleared.debt_amount, cleared.amount, again.id, nothing) == (Decimal(-2), 0, cleared.id, None)
        assert columns(user, btc) == (0, 0, 0)
        assert assets_selectors.ledger_mismatches() == []

    def test_refuses_a_business_type_that_does_not_clear_a_debt(self, user, btc):
        with pytest.raises(ValueError):
            assets_debts.balance_debt_clear(user_id=user.id, coin=btc, business_type=BusinessType.RECHARGE, biz_ref="x")


@pytest.mark.django_db
class TestDebtConstraints:
    def test_the_database_refuses_a_negative_debt_or_money_available_beside_a_debt(self, user, btc):
        owed(user, btc, "2")

        for values in ({"debt": Decimal(-1)}, {"available": Decimal(1)}):
            with pytest.raises(IntegrityError), transaction.atomic():
                Balance.objects.filter(user=user, coin=btc).update(**values)

        assert columns(user, btc) == (0, 0, Decimal(2))


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_a_reversal_racing_credits_of_the_same_user_leaves_one_consistent_ledger(user):
    btc = CoinConfig.objects.get(coin_id="BTC")
    credit(user, btc, "3", "d1")
    post(assets_services.balance_debit, user, btc, "2.5", BusinessType.ADJUSTMENT_DEBIT, "spent")
    start = threading.Barrier(3)

    def run(work):
        def thread():
            start.wait(timeout=10)
            try:
                with transaction.atomic(durable=True):
                    work()
            finally:
                connection.close()

        return threading.Thread(target=thread)

    threads = [
        run(lambda: assets_debts.balance_reverse_credit(user_id=user.id, coin=btc, amount=Decimal(3), biz_ref="d1")),
        run(
            lambda: assets_services.balance_credit(
                user_id=user.id, coin=btc, amount=Decimal(1), business_type=BusinessType.RECHARGE, biz_ref="d2"
            )
        ),
        run(
            lambda: assets_services.balance_credit_batch(
                coin=btc, business_type=BusinessType.RECHARGE, credits=[Credit(user.id, Decimal(1), "d3")]
            )
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    available, frozen, debt = columns(user, btc)
    assert available + frozen - debt == Decimal("0.5") - 3 + 1 + 1  # whatever order the locks gave
    assert debt == 0 or available == 0
    assert Flow.objects.filter(business_type=BusinessType.REORG_REVERSAL).count() <= 1
    assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 3
    assert assets_selectors.ledger_mismatches() == []
