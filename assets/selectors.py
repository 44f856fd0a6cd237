"""Reads of balances and flows."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet, Sum

from assets.models import Balance, Flow
from coins import selectors as coins_selectors
from wallet_project.money import exact


def balance_list(*, user_id: int) -> QuerySet[Balance]:
    """Return the user's balances, one per coin they have ever held."""
    return Balance.objects.filter(user_id=user_id).order_by("coin_id")


def flow_list(
    *,
    user_id: int,
    coin_id: str | None = None,
    business_type: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Flow]:
    """
    Return the user's flows, newest first, ready to paginate.

    :raises UnknownCoin: coin_id names no coin (a disabled one still lists its history).
    """
    flows = Flow.objects.filter(user_id=user_id)
    if coin_id is not None:
        flows = flows.filter(coin_id=coins_selectors.coin_get(coin_id=coin_id).coin_id)
    if business_type is not None:
        flows = flows.filter(business_type=business_type)
    if since is not None:
        flows = flows.filter(create_time__gte=since)
    if until is not None:
        flows = flows.filter(create_time__lt=until)
    return flows.order_by("-id")


def ledger_mismatches(*, user_id: int | None = None) -> list[dict[str, object]]:
    """
    Return every (user, coin) whose balance differs from the sum of its flows.

    An empty list is a healthy ledger; reconciliation and the tests use this one definition.
    """
    balances = Balance.objects.all()
    flows = Flow.objects.all()
    if user_id is not None:
        balances = balances.filter(user_id=user_id)
        flows = flows.filter(user_id=user_id)
    sums: dict[tuple[int, str], tuple[Decimal, Decimal]] = {}
    if connection.vendor == "sqlite":
        # SQLite sums decimals in floating point; add them up exactly here instead.
        for user, coin, amount, frozen in flows.values_list("user_id", "coin_id", "amount", "frozen_amount"):
            available_sum, frozen_sum = sums.get((user, coin), (Decimal(0), Decimal(0)))
            with exact():
                sums[(user, coin)] = (available_sum + amount, frozen_sum + frozen)
    else:
        for row in flows.values("user_id", "coin_id").annotate(available=Sum("amount"), frozen=Sum("frozen_amount")):
            sums[(row["user_id"], row["coin_id"])] = (row["available"] or Decimal(0), row["frozen"] or Decimal(0))
    mismatches = []
    for balance in balances.order_by("id"):
        expected = sums.pop((balance.user_id, balance.coin_id), (Decimal(0), Decimal(0)))
        if (balance.available, balance.frozen) != expected:
            mismatches.append(
                {
                    "user_id": balance.user_id,
                    "coin_id": balance.coin_id,
                    "available": balance.available,
                    "frozen": balance.frozen,
                    "flows_available": expected[0],
                    "flows_frozen": expected[1],
                }
            )
    for (orphan_user, orphan_coin), (available, frozen) in sums.items():
        mismatches.append(
            {
                "user_id": orphan_user,
                "coin_id": orphan_coin,
                "available": None,
                "frozen": None,
                "flows_available": available,
                "flows_frozen": frozen,
            }
        )
    return mismatches
