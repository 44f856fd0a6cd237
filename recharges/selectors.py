"""Reads of deposits, scanner state and reorg holds."""

from __future__ import annotations

from django.db.models import QuerySet

from recharges.models import AccountHold, HoldStatus, RechargeRecord, RechargeStatus, ScanCursor


def withdrawals_held(*, user_id: int) -> bool:
    """
    Return whether the user's withdrawals are held: a credited deposit was orphaned by a reorg
    and the balance could not cover its reversal. Withdrawal services refuse while this is True.
    """
    return AccountHold.objects.filter(user_id=user_id, status=HoldStatus.ACTIVE).exists()


def account_hold_list(*, active_only: bool = True) -> QuerySet[AccountHold]:
    holds = AccountHold.objects.all()
    if active_only:
        holds = holds.filter(status=HoldStatus.ACTIVE)
    return holds.order_by("-id")


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
    """Return the user's deposits, newest first, ready to paginate (coin joined for its chain)."""
    records = RechargeRecord.objects.filter(user_id=user_id).select_related("coin")
    if coin_id is not None:
        records = records.filter(coin_id=coin_id)
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
