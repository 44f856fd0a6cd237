"""Reads of balances and flows."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import Q, QuerySet, Sum

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


# SQLite, the embedded demo's database, keeps a decimal as a double: 15 significant digits. An ETH
# balance such as 99.999947362538748 comes back as 99.9999473625387, and every posting rounds again,
# so there a balance and the sum of its flows agree only to that precision. MariaDB is exact.
_SQLITE_RELATIVE = Decimal("1e-13")


def stored_equal(a: Decimal | None, b: Decimal | None) -> bool:
    """Whether two amounts read from the database are the same, as exactly as the database keeps them."""
    if a is None or b is None:
        return a is b
    if connection.vendor != "sqlite":
        return a == b
    with exact():
        return abs(a - b) <= _SQLITE_RELATIVE * max(Decimal(1), abs(a), abs(b))


def _stored_equal_all(a: tuple[Decimal, ...], b: tuple[Decimal, ...]) -> bool:
    return all(stored_equal(x, y) for x, y in zip(a, b, strict=True))


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
        if not _stored_equal_all((balance.available, balance.frozen, balance.debt), expected):
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
        if not stored_equal(balance.balance, expected):
            mismatches.append(
                {"account": balance.account, "coin_id": balance.coin_id, "balance": balance.balance, "flows": expected}
            )
    for (account, coin_id), flows_sum in sums.items():
        mismatches.append({"account": account, "coin_id": coin_id, "balance": None, "flows": flows_sum})
    return mismatches


# --- reconciliation ------------------------------------------------------------------------------


def users_total(*, coin_id: str) -> Decimal:
    """Return Σ (available + frozen - debt) over every user's balance of the coin: what users own."""
    row = Balance.objects.filter(coin_id=coin_id).aggregate(a=Sum("available"), f=Sum("frozen"), d=Sum("debt"))
    with exact():
        return (row["a"] or Decimal(0)) + (row["f"] or Decimal(0)) - (row["d"] or Decimal(0))


def flow_id_max() -> int:
    """Return the highest user flow id (0 when none)."""
    return Flow.objects.order_by("-id").values_list("id", flat=True).first() or 0


def flow_users_since(*, coin_id: str, after_id: int, since: datetime) -> set[int]:
    """
    Return the users with a flow of the coin above `after_id` or created at or after `since`.

    Both, because a flow committed late can carry a lower id than one already seen: the time
    window catches it (the daily full check catches anything older).
    """
    rows = Flow.objects.filter(coin_id=coin_id).filter(Q(id__gt=after_id) | Q(create_time__gte=since))
    return set(rows.values_list("user_id", flat=True).distinct())


# One statement per chunk of users: the sums of their flows beside their balance row.
_CHECK_SQL = """
SELECT s.user_id, s.n, s.a, s.f, s.d, b.available, b.frozen, b.debt
FROM (SELECT user_id, COUNT(*) AS n, SUM(amount) AS a, SUM(frozen_amount) AS f, SUM(debt_amount) AS d
      FROM asset_flow WHERE coin_id = %s{users} GROUP BY user_id) s
LEFT JOIN asset_balance b ON b.user_id = s.user_id AND b.coin_id = %s
"""
# Balance rows holding something with no flow at all.
_FLOWLESS_SQL = """
SELECT b.user_id, b.available, b.frozen, b.debt FROM asset_balance b
WHERE b.coin_id = %s{users} AND (b.available <> 0 OR b.frozen <> 0 OR b.debt <> 0)
AND NOT EXISTS (SELECT 1 FROM asset_flow f WHERE f.user_id = b.user_id AND f.coin_id = b.coin_id)
"""
USERS_CHUNK = 1000


def ledger_check(*, coin_id: str, user_ids: Collection[int] | None = None) -> tuple[int, list[dict[str, object]]]:
    """
    Compare each user balance of the coin (of the given users, or all) with the sums of its flows
    in every column; return (flows read, mismatches as ledger_mismatches gives them).

    On MariaDB the database sums (exact DECIMAL arithmetic) and the rows come back one per user;
    SQLite sums decimals in floating point, so there the flows are added up here.
    """
    if connection.vendor == "sqlite":
        return _ledger_check_python(coin_id=coin_id, user_ids=user_ids)
    chunks: list[list[int] | None] = [None]
    if user_ids is not None:
        ordered = sorted(user_ids)
        chunks = [ordered[i : i + USERS_CHUNK] for i in range(0, len(ordered), USERS_CHUNK)]
    flows = 0
    mismatches: list[dict[str, object]] = []
    zero = Decimal(0)
    with connection.cursor() as cursor:
        for chunk in chunks:
            users = "" if chunk is None else f" AND user_id IN ({', '.join(['%s'] * len(chunk))})"
            cursor.execute(_CHECK_SQL.format(users=users), [coin_id, *(chunk or []), coin_id])
            for user_id, n, a, f, d, available, frozen, debt in cursor.fetchall():
                flows += n
                if (available, frozen, debt) != (a, f, d):
                    mismatches.append(_mismatch(user_id, coin_id, (available, frozen, debt), (a, f, d)))
            users = "" if chunk is None else f" AND b.user_id IN ({', '.join(['%s'] * len(chunk))})"
            cursor.execute(_FLOWLESS_SQL.format(users=users), [coin_id, *(chunk or [])])
            for user_id, available, frozen, debt in cursor.fetchall():
                mismatches.append(_mismatch(user_id, coin_id, (available, frozen, debt), (zero, zero, zero)))
    return flows, mismatches


def _mismatch(
    user_id: int, coin_id: str, balance: tuple[object, object, object], flows: tuple[object, object, object]
) -> dict[str, object]:
    return {
        "user_id": user_id,
        "coin_id": coin_id,
        "available": balance[0],
        "frozen": balance[1],
        "debt": balance[2],
        "flows_available": flows[0],
        "flows_frozen": flows[1],
        "flows_debt": flows[2],
    }


def _ledger_check_python(*, coin_id: str, user_ids: Collection[int] | None) -> tuple[int, list[dict[str, object]]]:
    flows = Flow.objects.filter(coin_id=coin_id)
    balances = Balance.objects.filter(coin_id=coin_id)
    if user_ids is not None:
        flows, balances = flows.filter(user_id__in=list(user_ids)), balances.filter(user_id__in=list(user_ids))
    zero = (Decimal(0), Decimal(0), Decimal(0))
    sums: dict[int, tuple[Decimal, Decimal, Decimal]] = {}
    count = 0
    for user, amount, frozen, debt in flows.values_list("user_id", "amount", "frozen_amount", "debt_amount"):
        count += 1
        a, f, d = sums.get(user, zero)
        with exact():
            sums[user] = (a + amount, f + frozen, d + debt)
    mismatches = []
    for balance in balances.order_by("user_id"):
        expected = sums.pop(balance.user_id, zero)
        if not _stored_equal_all((balance.available, balance.frozen, balance.debt), expected):
            mismatches.append(
                _mismatch(balance.user_id, coin_id, (balance.available, balance.frozen, balance.debt), expected)
            )
    for user, expected in sums.items():
        mismatches.append(_mismatch(user, coin_id, (None, None, None), expected))
    return count, mismatches


def house_check(*, coin_id: str) -> tuple[int, list[dict[str, object]]]:
    """Return (house flows read, house mismatches) of the coin: each house balance against Σ its flows."""
    flows = HouseFlow.objects.filter(coin_id=coin_id).count()
    return flows, [row for row in house_mismatches() if row["coin_id"] == coin_id]
