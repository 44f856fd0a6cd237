"""Reads of withdrawals."""

from __future__ import annotations

from django.db.models import QuerySet

from coins import selectors as coins_selectors
from wallet_project.errors import NotFound
from withdrawals.models import WithdrawRecord


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
