"""The snapshot reads every coin at one moment: a booking committed while it reads is in no coin of it."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from assets import services as assets_services
from assets.models import Balance, BusinessType
from coins.models import CoinConfig
from reserves import services as reserves_services
from reserves.models import ReserveLeaf
from reserves.tests.conftest import balance_set


def _credit_elsewhere(user_id: int, coin_id: str, amount: str) -> None:
    """Book a credit on another connection and commit it (a deposit credited by a worker meanwhile)."""

    def book() -> None:
        try:
            with transaction.atomic(durable=True):
                assets_services.balance_credit(
                    user_id=user_id,
                    coin=CoinConfig.objects.get(coin_id=coin_id),
                    amount=Decimal(amount),
                    business_type=BusinessType.ADJUSTMENT_CREDIT,
                    biz_ref=f"por-{user_id}-{coin_id}",
                )
        finally:
            connection.close()

    worker = threading.Thread(target=book)
    worker.start()
    worker.join(timeout=30)


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_a_credit_committed_between_two_coins_reads_is_in_neither(user):
    balance_set(user.id, "BTC", available="1")
    balance_set(user.id, "TRX", available="10")
    seen = []

    def between(coin_id: str) -> None:
        if not seen:  # after the first coin, before the second
            _credit_elsewhere(user.id, "TRX", "5")
        seen.append(coin_id)

    snapshot = reserves_services.snapshot_build(now=timezone.now(), coin_ids=["BTC", "TRX"], progress=between)

    trx = ReserveLeaf.objects.get(tree__snapshot=snapshot, tree__coin_id="TRX", user_id=user.id)
    assert seen == ["BTC", "TRX"]
    assert Balance.objects.get(user_id=user.id, coin_id="TRX").available == Decimal(15)  # it was committed
    assert trx.balance_base_units == 10 * 10**6  # and the snapshot, begun before it, does not see it


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_the_session_is_back_at_read_committed_after_a_snapshot(user):
    balance_set(user.id, "BTC", available="1")

    reserves_services.snapshot_build(now=timezone.now(), coin_ids=["BTC"])

    with connection.cursor() as cursor:
        cursor.execute("SELECT @@tx_isolation")
        assert cursor.fetchone()[0] == "READ-COMMITTED"
