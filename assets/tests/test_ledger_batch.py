from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from wallet_project.db import retry_on_deadlock

Credit = assets_services.Credit


@pytest.fixture
def users(db):
    return [get_user_model().objects.create_user(username=f"u{i}") for i in range(3)]


@pytest.mark.django_db
class TestBalanceCreditBatch:
    def test_books_what_one_credit_per_line_would_book(self, users):
        btc = CoinConfig.objects.get(coin_id="BTC")
        assets_services.balance_credit(
            user_id=users[0].id, coin=btc, amount=Decimal("1"), business_type=BusinessType.RECHARGE, biz_ref="before"
        )
        lines = [Credit(users[i % 3].id, Decimal(f"0.{i + 1}"), f"b{i}", f"tx{i}") for i in range(9)]

        flows = assets_services.balance_credit_batch(coin=btc, business_type=BusinessType.RECHARGE, credits=lines)

        assert [f.biz_ref for f in flows] == [f"b{i}" for i in range(9)]
        assert Balance.objects.get(user=users[0], coin=btc).available == Decimal("1") + Decimal("1.2")
        assert Balance.objects.get(user=users[2], coin=btc).available == Decimal("1.8")
        assert OutboxMessage.objects.count() == Flow.objects.count() == 10
        assert assets_selectors.ledger_mismatches() == []
        chain = list(Flow.objects.filter(user=users[0]).order_by("id"))
        assert [f.balance_before for f in chain] == [0, Decimal("1"), Decimal("1.1"), Decimal("1.5")]

    def test_a_replayed_batch_books_nothing_new(self, users):
        btc = CoinConfig.objects.get(coin_id="BTC")
        lines = [Credit(u.id, Decimal("0.5"), f"r{u.id}") for u in users]
        first = assets_services.balance_credit_batch(coin=btc, business_type=BusinessType.RECHARGE, credits=lines)

        again = assets_services.balance_credit_batch(
            coin=btc, business_type=BusinessType.RECHARGE, credits=[*lines, lines[0]]
        )

        assert [f.id for f in again] == [*[f.id for f in first], first[0].id]
        assert Flow.objects.count() == 3
        assert sum(b.available for b in Balance.objects.all()) == Decimal("1.5")

    def test_refuses_the_whole_batch_when_one_line_conflicts_or_is_invalid(self, users):
        btc = CoinConfig.objects.get(coin_id="BTC")
        assets_services.balance_credit(
            user_id=users[0].id, coin=btc, amount=Decimal("1"), business_type=BusinessType.RECHARGE, biz_ref="taken"
        )

        with pytest.raises(assets_services.FlowConflict), transaction.atomic():
            assets_services.balance_credit_batch(
                coin=btc,
                business_type=BusinessType.RECHARGE,
                credits=[Credit(users[1].id, Decimal("1"), "new"), Credit(users[1].id, Decimal("1"), "taken")],
            )
        with pytest.raises(coins_selectors.InvalidAmount), transaction.atomic():
            assets_services.balance_credit_batch(
                coin=btc,
                business_type=BusinessType.RECHARGE,
                credits=[
                    Credit(users[1].id, Decimal("1"), "fine"),
                    Credit(users[1].id, Decimal("0.000000001"), "too-fine"),
                ],
            )

        assert Flow.objects.count() == 1
        assert not Balance.objects.filter(user=users[1], available__gt=0).exists()


def _durable(unit):
    with transaction.atomic(durable=True):
        return unit()


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_batches_racing_single_credits_lose_no_update():
    btc = CoinConfig.objects.get(coin_id="BTC")
    people = [get_user_model().objects.create_user(username=f"r{i}") for i in range(5)]
    start = threading.Barrier(2)

    def batches():
        start.wait()
        try:
            for n in range(20):
                lines = [Credit(p.id, Decimal("0.01"), f"batch{n}-{p.id}") for p in reversed(people)]
                retry_on_deadlock(
                    lambda lines=lines: _durable(
                        lambda: assets_services.balance_credit_batch(
                            coin=btc, business_type=BusinessType.RECHARGE, credits=lines
                        )
                    )
                )
        finally:
            connection.close()

    def singles():
        start.wait()
        try:
            for n in range(20):
                for p in people:
                    retry_on_deadlock(
                        lambda p=p, ref=f"s{n}-{p.id}": _durable(
                            lambda: assets_services.balance_credit(
                                user_id=p.id,
                                coin=btc,
                                amount=Decimal("0.02"),
                                business_type=BusinessType.RECHARGE,
                                biz_ref=ref,
                            )
                        )
                    )
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        for future in [pool.submit(batches), pool.submit(singles)]:
            future.result()

    assert {b.available for b in Balance.objects.filter(coin=btc)} == {Decimal("0.6")}
    assert assets_selectors.ledger_mismatches() == []


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_the_same_reference_raced_for_two_users_books_once_and_refuses_the_other():
    btc = CoinConfig.objects.get(coin_id="BTC")
    people = [get_user_model().objects.create_user(username=f"c{i}") for i in range(2)]
    start = threading.Barrier(2)

    def post(person):
        start.wait()
        try:
            _durable(
                lambda: assets_services.balance_credit(
                    user_id=person.id,
                    coin=btc,
                    amount=Decimal("1"),
                    business_type=BusinessType.RECHARGE,
                    biz_ref="shared",
                )
            )
            return "booked"
        except assets_services.FlowConflict:
            return "conflict"
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(post, people))

    assert outcomes == ["booked", "conflict"]
    assert Flow.objects.filter(biz_ref="shared").count() == 1
    assert assets_selectors.ledger_mismatches() == []
