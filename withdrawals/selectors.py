"""Reads of withdrawals."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, QuerySet, Sum

from coins import selectors as coins_selectors
from wallet_project import stats
from wallet_project.errors import NotFound
from withdrawals.models import Payout, PayoutStatus, PayoutTx, PayoutTxStatus, WithdrawRecord, WithdrawStatus


def approved_unpaid_total(*, coin_id: str) -> Decimal:
    """
    What the coin's approved withdrawals to outside addresses not in a payout yet will send: the hot
    addresses must keep it (a transfer to cold may only take what is above it).
    """
    total = WithdrawRecord.objects.filter(
        status=WithdrawStatus.APPROVED, to_user__isnull=True, coin_id=coin_id
    ).aggregate(total=Sum("actual_amount"))["total"]
    return total or Decimal(0)


def withdrawal_list(*, user_id: int, coin_id: str | None = None, status: int | None = None) -> QuerySet[WithdrawRecord]:
    """
    The user's withdrawals, newest first.

    :raises UnknownCoin: coin_id names no coin (a disabled one still lists its history).
    """
    records = WithdrawRecord.objects.filter(user_id=user_id)
    if coin_id:
        records = records.filter(coin_id=coins_selectors.coin_get(coin_id=coin_id).coin_id)
    if status is not None:
        records = records.filter(status=status)
    return records.order_by("-id")


def withdrawal_get(*, user_id: int, withdraw_no: str) -> WithdrawRecord:
    """
    The user's withdrawal with this number.

    :raises NotFound: no such withdrawal, or another user's.
    """
    record = WithdrawRecord.objects.filter(user_id=user_id, withdraw_no=withdraw_no).order_by("id").first()
    if record is None:
        raise NotFound(f"No withdrawal {withdraw_no}.")
    return record


@dataclass(frozen=True)
class ReviewQueue:
    size: int
    oldest_applied_at: datetime | None
    # The numbers of the oldest few, for an alert's message.
    oldest_numbers: tuple[str, ...]


def review_queue(*, waiting_since: datetime | None = None, sample: int = 5) -> ReviewQueue:
    """
    Return the withdrawals waiting for an auditor (status pending review): how many and the oldest.

    With waiting_since, only those applied for at or before it (waiting at least that long).
    """
    rows = WithdrawRecord.objects.filter(status=WithdrawStatus.PENDING_REVIEW)
    if waiting_since is not None:
        rows = rows.filter(create_time__lte=waiting_since)
    oldest = list(rows.order_by("create_time", "id").values_list("withdraw_no", "create_time")[:sample])
    return ReviewQueue(
        size=rows.count(),
        oldest_applied_at=oldest[0][1] if oldest else None,
        oldest_numbers=tuple(number for number, _ in oldest),
    )


def withdrawal_statuses(*, withdraw_nos: Collection[str]) -> dict[str, int]:
    """Return {withdraw_no: status} of the given withdrawals (unknown numbers are left out)."""
    return dict(WithdrawRecord.objects.filter(withdraw_no__in=list(withdraw_nos)).values_list("withdraw_no", "status"))


def withdrawal_window_outcomes(*, since: datetime) -> dict[tuple[str, bool, int], int]:
    """
    Return {(chain_id, on_chain, status): count} of the withdrawals applied for at or after since.

    on_chain is False for transfers to another user's deposit address (settled in the ledger).
    """
    rows = (
        WithdrawRecord.objects.filter(create_time__gte=since)
        .values("coin__chain_id", "to_user_id", "status")
        .annotate(n=Count("id"))
    )
    outcomes: dict[tuple[str, bool, int], int] = {}
    for row in rows:
        key = (row["coin__chain_id"], row["to_user_id"] is None, row["status"])
        outcomes[key] = outcomes.get(key, 0) + row["n"]
    return outcomes


def withdrawal_processing_latency(*, since: datetime, bounds: Sequence[float]) -> stats.LatencyHistogram:
    """Return the histogram of apply → completed of the withdrawals applied for at or after since."""
    rows = WithdrawRecord.objects.filter(create_time__gte=since, status=WithdrawStatus.COMPLETED)
    return stats.latency_histogram(rows, start="create_time", end="complete_time", bounds=bounds)


# --- what reconciliation needs of payouts ------------------------------------------------------


@dataclass(frozen=True)
class PayoutInFlight:
    """A payout as reconciliation sees it: what it pays (per coin) and its transactions."""

    payout_id: int
    chain_id: str
    coin_id: str
    paid: Decimal  # Σ what its recipients get, in coin_id
    # (tx_hash, kind, stored fee or None, block number or None) of each transaction that may be or was mined.
    txs: tuple[tuple[str, str, Decimal | None, int | None], ...]


def payouts_open(*, chain_id: str) -> list[PayoutInFlight]:
    """Return the chain's open payouts with their live transactions (signed, broadcast or mined)."""
    live = (PayoutTxStatus.SIGNED, PayoutTxStatus.BROADCAST, PayoutTxStatus.MINED)
    return _in_flight(
        Payout.objects.filter(chain_id=chain_id, status=PayoutStatus.OPEN),
        PayoutTx.objects.filter(payout__chain_id=chain_id, payout__status=PayoutStatus.OPEN, status__in=live),
    )


def payouts_settled_above(*, chain_id: str, height: int) -> list[PayoutInFlight]:
    """
    Return the chain's settled payouts whose mined transaction is in a block above `height`: the
    ledger settled them, the chain at that height does not show them yet.
    """
    settled = (PayoutStatus.COMPLETED, PayoutStatus.FAILED)
    mined = (PayoutTxStatus.MINED, PayoutTxStatus.FAILED)
    txs = PayoutTx.objects.filter(
        payout__chain_id=chain_id, payout__status__in=settled, status__in=mined, block_number__gt=height
    )
    return _in_flight(Payout.objects.filter(id__in=txs.values("payout_id")), txs)


def _in_flight(payouts: QuerySet, txs: QuerySet) -> list[PayoutInFlight]:
    by_payout: dict[int, list[tuple[str, str, Decimal | None, int | None]]] = {}
    for payout_id, tx_hash, kind, fee, block in txs.order_by("id").values_list(
        "payout_id", "tx_hash", "kind", "fee", "block_number"
    ):
        by_payout.setdefault(payout_id, []).append((tx_hash, kind, fee, block))
    rows = payouts.annotate(paid=Sum("links__amount")).values_list("id", "chain_id", "coin_id", "paid", "status")
    found = []
    for payout_id, chain_id, coin_id, paid, status in rows.order_by("id"):
        # A failed payout paid its recipients nothing (reverted): only its fee left the chain.
        paid_out = Decimal(0) if status == PayoutStatus.FAILED else (paid or Decimal(0))
        found.append(
            PayoutInFlight(
                payout_id=payout_id,
                chain_id=chain_id,
                coin_id=coin_id,
                paid=paid_out,
                txs=tuple(by_payout.get(payout_id, ())),
            )
        )
    return found
