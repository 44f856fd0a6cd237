"""Reads of the sweep jobs for other apps (reconciliation)."""

from __future__ import annotations

from decimal import Decimal

from sweeps.models import OPEN_STATUSES, SweepJob, SweepStatus

# (what, tx_hash, stored fee or None, block number or None) of one transaction of a job.
FeeTx = tuple[str, str, Decimal | None, int | None]


def fees_unbooked(*, chain_id: str) -> list[FeeTx]:
    """
    Return the transactions of the chain's open jobs (gas top-up and sweep) whose network fee is
    not booked yet: the fees are booked when the job ends. Whether one is mined the caller asks
    the node. The stored fee is the sweep's own (BTC: known at signing), else the top-up receipt's.
    """
    found: list[FeeTx] = []
    rows = SweepJob.objects.filter(chain_id=chain_id, status__in=OPEN_STATUSES).order_by("id")
    for job_no, topup_hash, topup_fee, topup_block, tx_hash, fee, block in rows.values_list(
        "job_no", "topup_tx_hash", "topup_fee", "topup_block", "tx_hash", "fee", "block_number"
    ):
        if topup_hash:
            found.append((f"sweep {job_no} gas top-up", topup_hash, topup_fee, topup_block))
        if tx_hash:
            found.append((f"sweep {job_no}", tx_hash, fee, block))
    return found


def fees_booked_above(*, chain_id: str, height: int) -> list[FeeTx]:
    """
    Return the transactions of the chain's ended jobs whose fee is booked and that were mined in a
    block above `height`: the ledger has the fee, the chain at that height does not show it yet.
    """
    found: list[FeeTx] = []
    ended = SweepJob.objects.filter(chain_id=chain_id, status__in=(SweepStatus.CONFIRMED, SweepStatus.FAILED))
    for job_no, topup_hash, topup_fee, topup_block, tx_hash, fee, block in (
        (ended.filter(topup_block__gt=height) | ended.filter(block_number__gt=height))
        .order_by("id")
        .values_list("job_no", "topup_tx_hash", "topup_fee", "topup_block", "tx_hash", "fee", "block_number")
    ):
        if topup_hash and topup_fee and topup_block is not None and topup_block > height:
            found.append((f"sweep {job_no} gas top-up", topup_hash, topup_fee, topup_block))
        if tx_hash and fee and block is not None and block > height:
            found.append((f"sweep {job_no}", tx_hash, fee, block))
    return found
