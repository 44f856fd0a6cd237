"""Reads of balances and flows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet, Sum

from assets.models import Balance, Flow, HouseBalance, HouseFlow
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


def debts_open(*, user_id: int) -> dict[str, Decimal]:
    """Return {coin_id: debt} of the user's balances that carry a debt (what a reorg took back beyond them)."""
    return dict(Balance.objects.filter(user_id=user_id, debt__gt=0).values_list("coin_id", "debt"))


def debts_of(*, pairs: set[tuple[int, str]]) -> dict[tuple[int, str], Decimal]:
    """Return {(user_id, coin_id): debt} of the given (user, coin) balances (0 when none or no row)."""
    found = {pair: Decimal(0) for pair in pairs}
    users = {user_id for user_id, _ in pairs}
    coins = {coin_id for _, coin_id in pairs}
    if pairs:
        rows = Balance.objects.filter(user_id__in=users, coin_id__in=coins).values_list("user_id", "coin_id", "debt")
        for user_id, coin_id, debt in rows:
            if (user_id, coin_id) in found:
                found[(user_id, coin_id)] = debt
    return found


def ledger_mismatches(*, user_id: int | None = None) -> list[dict[str, object]]:
    """
    Return every (user, coin) whose balance differs from the sum of its flows, in any column
    (available, frozen, debt).

    An empty list is a healthy ledger; reconciliation and the tests use this one definition.
    """
    balances = Balance.objects.all()
    flows = Flow.objects.all()
    if user_id is not None:
        balances = balances.filter(user_id=user_id)
        flows = flows.filter(user_id=user_id)
    zero = (Decimal(0), Decimal(0), Decimal(0))
    sums: dict[tuple[int, str], tuple[Decimal, Decimal, Decimal]] = {}
    if connection.vendor == "sqlite":
        # SQLite sums decimals in floating point; add them up exactly here instead.
        rows = flows.values_list("user_id", "coin_id", "amount", "frozen_amount", "debt_amount")
        for user, coin, amount, frozen, debt in rows:
            available_sum, frozen_sum, debt_sum = sums.get((user, coin), zero)
            with exact():
                sums[(user, coin)] = (available_sum + amount, frozen_sum + frozen, debt_sum + debt)
    else:
        totals = flows.values("user_id", "coin_id").annotate(
            available=Sum("amount"), frozen=Sum("frozen_amount"), debt=Sum("debt_amount")
        )
        for row in totals:
            sums[(row["user_id"], row["coin_id"])] = (
                row["available"] or Decimal(0),
                row["frozen"] or Decimal(0),
                row["debt"] or Decimal(0),
            )
    mismatches = []
    for balance in balances.order_by("id"):
        expected = sums.pop((balance.user_id, balance.coin_id), zero)
        if (balance.available, balance.frozen, balance.debt) != expected:
            mismatches.append(
                {
                    "user_id": balance.user_id,
                    "coin_id": balance.coin_id,
                    "available": balance.available,
                    "frozen": balance.frozen,
                    "debt": balance.debt,
                    "flows_available": expected[0],
                    "flows_frozen": expected[1],
                    "flows_debt": expected[2],
                }
            )
    for (orphan_user, orphan_coin), (available, frozen, debt) in sums.items():
        mismatches.append(
            {
                "user_id": orphan_user,
                "coin_id": orphan_coin,
                "available": None,
                "frozen": None,
                "debt": None,
                "flows_available": available,
                "flows_frozen": frozen,
                "flows_debt": debt,
            }
        )
    return mismatches


def balances_of_coin(*, coin_id: str) -> Iterator[tuple[int, Decimal, Decimal, Decimal]]:
    """
    Return (user_id, available, frozen, debt) of every balance row of the coin, in user id order.

    Proof of reserves reads them all inside one REPEATABLE READ transaction (reserves.services).
    """
    rows = Balance.objects.filter(coin_id=coin_id).order_by("user_id")
    return rows.values_list("user_id", "available", "frozen", "debt").iterator(chunk_size=20_000)


def house_balances(*, coin_id: str) -> dict[str, Decimal]:
    """Return {house account: balance} of the coin (signed; accounts never posted to are absent)."""
    rows = HouseBalance.objects.filter(coin_id=coin_id).values_list("account", "balance")
    return dict(rows)


def house_total(*, coin_id: str) -> Decimal:
    """Return Σ house balances of the coin: the exchange's own share of what it holds."""
    with exact():
        return sum(house_balances(coin_id=coin_id).values(), Decimal(0))


def house_mismatches() -> list[dict[str, object]]:
    """Return every (account, coin) whose house balance differs from the sum of its house flows."""
    sums: dict[tuple[str, str], Decimal] = {}
    for account, coin_id, amount in HouseFlow.objects.values_list("account", "coin_id", "amount").iterator():
        with exact():
            sums[(account, coin_id)] = sums.get((account, coin_id), Decimal(0)) + amount
    mismatches: list[dict[str, object]] = []
    for balance in HouseBalance.objects.order_by("id"):
        expected = sums.pop((balance.account, balance.coin_id), Decimal(0))
        if balance.balance != expected:
            mismatches.append(
                {"account": balance.account, "coin_id": balance.coin_id, "balance": balance.balance, "flows": expected}
            )
    for (account, coin_id), flows_sum in sums.items():
        mismatches.append({"account": account, "coin_id": coin_id, "balance": None, "flows": flows_sum})
    return mismatches
