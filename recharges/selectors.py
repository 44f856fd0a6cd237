"""Reads of deposits, scanner state and reorg holds."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, QuerySet, Sum

from assets import selectors as assets_selectors
from coins import selectors as coins_selectors
from recharges.models import (
    AccountHold,
    HoldStatus,
    RechargeRecord,
    RechargeStatus,
    ScanCursor,
    TreasuryReceipt,
    TreasuryStatus,
)
from wallet_project import db, stats


def withdrawals_held(*, user_id: int) -> bool:
    """
    Return whether the user's withdrawals are held: a credited deposit was orphaned by a reorg,
    the balance could not cover its reversal, and the debt it left is still open (on the coin of
    an active hold). Withdrawal services refuse while this is True.

    The debt is read from the ledger, so a debt repaid a moment ago (by a deposit, a released
    withdrawal) releases withdrawals at once, before the hold's row is marked repaid. Holds made
    before debts were booked hold until ops settle or write them off. One query when the user
    has no active hold.
    """
    holds = list(
        AccountHold.objects.filter(user_id=user_id, status=HoldStatus.ACTIVE).values_list(
            "coin_id", "frozen_amount", "shortfall", "debt_amount"
        )
    )
    if not holds:
        return False
    if any(frozen > 0 or shortfall > debt for _, frozen, shortfall, debt in holds):
        return True
    debts = assets_selectors.debts_open(user_id=user_id)
    return any(coin_id in debts for coin_id, _, _, _ in holds)


def users_with_holds(*, user_ids: Collection[int]) -> set[int]:
    """Return which of these users have an active hold (one query); withdrawals_held says whether it holds
    their withdrawals now."""
    if not user_ids:
        return set()
    rows = AccountHold.objects.filter(user_id__in=set(user_ids), status=HoldStatus.ACTIVE)
    return set(rows.values_list("user_id", flat=True))


def account_hold_list(*, active_only: bool = True) -> QuerySet[AccountHold]:
    holds = AccountHold.objects.all()
    if active_only:
        holds = holds.filter(status=HoldStatus.ACTIVE)
    return holds.order_by("-id")


def account_hold_debts(*, holds: list[AccountHold]) -> dict[int, Decimal]:
    """Return {hold id: the open debt of its (user, coin) in the ledger}, for holds about to be closed."""
    debts = assets_selectors.debts_of(pairs={(hold.user_id, hold.coin_id) for hold in holds})
    return {hold.id: debts[(hold.user_id, hold.coin_id)] for hold in holds}


def chain_tips() -> dict[str, int]:
    """Return {chain_id: the node's tip height the scanner last saw}."""
    return dict(ScanCursor.objects.values_list("chain_id", "tip_height"))


def scan_height(*, chain_id: str) -> int | None:
    """
    Return the height up to which the chain's scanner has processed blocks (None before it started):
    the tip the UTXO set has seen, from which coin selection counts an output's confirmations.
    """
    return ScanCursor.objects.filter(chain_id=chain_id).order_by("id").values_list("height", flat=True).first()


def recharge_list(*, user_id: int, coin_id: str | None = None, status: int | None = None) -> QuerySet[RechargeRecord]:
    """
    Return the user's deposits, newest first, ready to paginate (coin joined for its chain).

    :raises UnknownCoin: coin_id names no coin (a disabled one still lists its history).
    """
    records = RechargeRecord.objects.filter(user_id=user_id).select_related("coin")
    if coin_id is not None:
        records = records.filter(coin_id=coins_selectors.coin_get(coin_id=coin_id).coin_id)
    if status is not None:
        records = records.filter(status=status)
    return records.order_by("-id")


def recharge_confirmations(*, record: RechargeRecord, tips: dict[str, int]) -> int:
    """Return a deposit's confirmations: live from the scanner's tip while pending, as settled otherwise."""
    if record.status != RechargeStatus.PENDING or record.block_number is None:
        return record.confirmations
    tip = tips.get(record.coin.chain_id)
    if tip is None:
        return record.confirmations
    return max(tip - record.block_number + 1, 0)


def scan_cursor_list() -> list[ScanCursor]:
    """Return every chain's scanner state (height processed, node tip seen and when), by chain."""
    return list(ScanCursor.objects.order_by("chain_id"))


def deposit_window_outcomes(*, since: datetime) -> dict[int, int]:
    """Return {status: count} of the deposits first seen at or after since (indexed on create_time)."""
    rows = RechargeRecord.objects.filter(create_time__gte=since).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def deposit_confirm_latency(*, since: datetime, bounds: Sequence[float]) -> stats.LatencyHistogram:
    """Return the histogram of first seen → credited of the deposits first seen at or after since."""
    rows = RechargeRecord.objects.filter(create_time__gte=since, status=RechargeStatus.CONFIRMED)
    return stats.latency_histogram(rows, start="create_time", end="confirm_time", bounds=bounds)


def deposits_in_flight(*, coin_id: str, height: int) -> dict[str, Decimal]:
    """
    Return what sits on the coin's exchange addresses at `height` without being in the ledger yet:
    {"pending": deposits waiting for their confirmations, "held": deposits held for review (above
    the maximum, or while recharge was disabled), "treasury": treasury receipts not yet booked}.
    """
    live = RechargeRecord.objects.filter(coin_id=coin_id, block_number__lte=height)
    held = (RechargeStatus.ABOVE_MAXIMUM, RechargeStatus.RECHARGE_DISABLED)
    receipts = TreasuryReceipt.objects.filter(coin_id=coin_id, status=TreasuryStatus.PENDING, block_number__lte=height)
    return {
        "pending": live.filter(status=RechargeStatus.PENDING).aggregate(s=Sum("amount"))["s"] or Decimal(0),
        "held": live.filter(status__in=held).aggregate(s=Sum("amount"))["s"] or Decimal(0),
        "treasury": receipts.aggregate(s=Sum("amount"))["s"] or Decimal(0),
    }


def credited_totals(*, coin_ids: Collection[str]) -> list[tuple[str, str, Decimal]]:
    """
    Return (deposit address, coin_id, total credited) of every address that was credited a deposit
    of one of coin_ids: what the sweep planner compares with what it already swept.

    One read of the credited rows, added up here in exact Decimal: MariaDB's GROUP BY over 100,000
    addresses sorts them (≈1 s) where reading the rows takes ≈0.15 s, and SQLite would sum in
    floating point. Deposits orphaned by a reorg or never credited are left out.
    """
    rows = db.values_rows(
        RechargeRecord.objects.filter(coin_id__in=list(coin_ids), status=RechargeStatus.CONFIRMED)
        .values_list("to_address", "coin_id", "amount")
        .order_by()
    )
    totals: dict[tuple[str, str], Decimal] = {}
    for address, coin_id, amount in rows:
        key = (address, coin_id)
        totals[key] = totals[key] + amount if key in totals else amount
    return [(address, coin_id, total) for (address, coin_id), total in totals.items()]
