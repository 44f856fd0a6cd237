"""Many threads posting to one balance on MariaDB: no lost update, no double booking."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, transaction

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow
from coins.models import CoinConfig
from wallet_project.db import retry_on_deadlock

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

THREADS = 8


def _in_thread(work):
    def run(*args):
        try:
            return work(*args)
        finally:
            connection.close()

    return run


def _with_deadlock_retry(post):
    # InnoDB may pick a deadlock victim; the whole transaction is retried, which the
    # idempotent reference makes safe.
    def unit():
        with transaction.atomic(durable=True):
            return post()

    return retry_on_deadlock(unit, attempts=10)


class TestConcurrentPostings:
    def test_many_threads_credit_one_new_balance_without_losing_an_update(self, user):
        btc = CoinConfig.objects.get(coin_id="BTC")
        start = threading.Barrier(THREADS)

        @_in_thread
        def worker(n):
            start.wait()
            for i in range(25):
                _with_deadlock_retry(
                    lambda ref=f"t{n}-{i}": assets_services.balance_credit(
                        user_id=user.id,
                        coin=btc,
                        amount=Decimal("0.00000001"),
                        business_type=BusinessType.RECHARGE,
                        biz_ref=ref,
                    )
                )

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(worker, range(THREADS)))

        assert Balance.objects.get(user=user, coin=btc).available == Decimal("0.00000001") * THREADS * 25
        assert Flow.objects.filter(user=user).count() == THREADS * 25
        assert assets_selectors.ledger_mismatches() == []

    def test_racing_replays_of_one_reference_book_it_once(self, user):
        btc = CoinConfig.objects.get(coin_id="BTC")
        start = threading.Barrier(THREADS)

        @_in_thread
        def worker(_):
            start.wait()
            return _with_deadlock_retry(
                lambda: assets_services.balance_credit(
                    user_id=user.id, coin=btc, amount=Decimal("1"), business_type=BusinessType.RECHARGE, biz_ref="same"
                )
            ).id

        with ThreadPoolExecutor(THREADS) as pool:
            flow_ids = set(pool.map(worker, range(THREADS)))

        assert len(flow_ids) == 1
        assert Balance.objects.get(user=user, coin=btc).available == Decimal("1")

    def test_racing_withdrawal_freezes_never_overdraw(self, user):
        btc = CoinConfig.objects.get(coin_id="BTC")
        assets_services.balance_credit(
            user_id=user.id, coin=btc, amount=Decimal("1"), business_type=BusinessType.RECHARGE, biz_ref="funding"
        )
        start = threading.Barrier(THREADS)

        @_in_thread
        def worker(n):
            start.wait()
            try:
                _with_deadlock_retry(
                    lambda: assets_services.balance_freeze(
                        user_id=user.id,
                        coin=btc,
                        amount=Decimal("0.3"),
                        business_type=BusinessType.WITHDRAW_FREEZE,
                        biz_ref=f"w{n}",
                    )
                )
                return True
            except assets_services.InsufficientFunds:
                return False

        with ThreadPoolExecutor(THREADS) as pool:
            frozen_ok = sum(pool.map(worker, range(THREADS)))

        balance = Balance.objects.get(user=user, coin=btc)
        assert frozen_ok == 3
        assert (balance.available, balance.frozen) == (Decimal("0.1"), Decimal("0.9"))
        assert assets_selectors.ledger_mismatches() == []
