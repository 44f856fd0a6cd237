"""
The sweep transaction's steps of an account chain's job (ETH, TRON): sign and store it, send it
(again), follow it to its block and settle the job, booking the fees its transactions paid.

Each transaction is signed and stored in the transaction that locks the job and moves its state
(and allocates the sender's EVM nonce); it is sent after the commit, and sent again (the same
bytes) by every later run until a block holds it. Shared with the top-up steps (sweeps.topup_steps):
sending, closing a job, forgetting a TRON transaction that expired unsent.
"""

from __future__ import annotations

from datetime import datetime

from django import db
from django.db import transaction

from addresses import signer
from chains import services as chains_services
from chains.base import NonceUsed, SignedTx, TxRejected
from coins import selectors as coins_selectors
from monitoring.models import Severity
from sweeps import common
from sweeps.chainops import EvmOps, Prepared, Skip, TronOps, Wait
from sweeps.common import NODE_ERRORS, SweepRun, alert, job_lock, job_wait, step
from sweeps.models import SweepJob, SweepStatus
from wallet_project.errors import WalletError

# Anticipated failures of one job: the run records them on the job and goes on with the next. A
# database deadlock or lock timeout (two threads creating the house balance row at once) rolled the
# step back whole: the next run does it again.
JOB_ERRORS: tuple[type[Exception], ...] = (
    *NODE_ERRORS,
    WalletError,
    ValueError,
    LookupError,
    Wait,
    db.OperationalError,
)


def native_planned(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime) -> bool:
    """PLANNED, the chain's own coin: sign and store the sweep of what the address holds, or skip it
    when that is worth less than it costs. :raises Wait: fees above the ceiling."""
    prepared = ops.native_sweep(job)
    if isinstance(prepared, Skip):
        expected, reason = SweepStatus.PLANNED, prepared.reason
        return close(job_id=job.id, expected=expected, to=SweepStatus.SKIPPED, reason=reason, run=run, now=now)
    return sign_store(job=job, ops=ops, expected=SweepStatus.PLANNED, prepared=prepared, run=run, now=now)


def terms_set(job: SweepJob, terms: dict[str, int]) -> None:
    job.gas_limit = terms.get("gas_limit")
    job.max_fee_per_gas = terms.get("max_fee_per_gas") or terms.get("gas_price")
    job.max_priority_fee_per_gas = terms.get("max_priority_fee_per_gas")
    job.fee_limit = terms.get("fee_limit")


# --- TOPUP_MINED: the token transfer ---------------------------------------------------------
def token_sign(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime) -> bool:
    tokens = ops.adapter.balance(job.from_address, contract=job.coin.contract_address)
    if tokens <= 0:
        return close(
            job_id=job.id,
            expected=SweepStatus.TOPUP_MINED,
            to=SweepStatus.FAILED,
            run=run,
            now=now,
            reason="the address holds none of the token any more",
            book=True,
            ops=ops,
        )
    try:
        prepared = ops.token_sweep(job, tokens)
    except Wait as exc:
        run.waiting += 1
        job_wait(job_id=job.id, reason=str(exc), now=now)
        return False
    return sign_store(job=job, ops=ops, expected=SweepStatus.TOPUP_MINED, prepared=prepared, run=run, now=now)


def sign_store(
    *, job: SweepJob, ops: EvmOps | TronOps, expected: SweepStatus, prepared: Prepared, run: SweepRun, now: datetime
) -> bool:
    node_next = ops.next_nonce(job.from_address) if ops.nonces else None
    with transaction.atomic(durable=True):
        locked = job_lock(job.id, expected)
        if locked is None:
            return False
        nonce = None
        if node_next is not None:
            nonce = chains_services.nonce_allocate(chain_id=job.chain_id, address=job.from_address, node_next=node_next)
        unsigned = prepared.build(nonce)
        short = None if prepared.covered else ops.adapter.shortfall(unsigned)
        if short is not None:
            raise Wait(f"the deposit address cannot pay its sweep now: {short}")
        signed = signer.signer_for(job.chain_id)(unsigned)
        if expected == SweepStatus.PLANNED:
            terms_set(locked, prepared.terms)
        locked.amount = common.to_amount(locked.coin, prepared.amount_base_units)
        locked.nonce, locked.tx_hash, locked.raw = nonce, signed.tx_hash, signed.raw
        locked.status, locked.reason, locked.signed_at, locked.update_time = SweepStatus.SIGNED, "", now, now
        locked.save()
    run.signed += 1
    step("sweep.signed")
    return True


# --- SIGNED / BROADCAST ----------------------------------------------------------------------
def broadcast(*, ops: EvmOps | TronOps, job: SweepJob, tx_hash: str, raw: str) -> str:
    """Send a stored transaction (again): sent, nonce_used (a mined transaction took its nonce), or refused."""
    try:
        ops.adapter.broadcast_irreversible(SignedTx(tx_hash=tx_hash, raw=raw))
    except TxRejected as exc:
        return broadcast_outcome(job=job, tx_hash=tx_hash, refusal=exc)
    return "sent"


def broadcast_outcome(*, job: SweepJob, tx_hash: str, refusal: TxRejected) -> str:
    """What a node's refusal of a sweep's transaction means: nonce_used, or refused (with an alert)."""
    if isinstance(refusal, NonceUsed):
        return "nonce_used"
    alert(
        kind="SWEEP_BROADCAST_REJECTED",
        subject=f"sweep {job.job_no}",
        severity=Severity.WARNING,
        text=f"the node refused transaction {tx_hash} of sweep {job.job_no} ({job.coin_id} from "
        f"{job.from_address}): {str(refusal)[:200]}",
    )
    return "refused"


def send(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime) -> bool:
    outcome = broadcast(ops=ops, job=job, tx_hash=job.tx_hash or "", raw=job.raw)
    return send_outcome(job=job, ops=ops, run=run, now=now, outcome=outcome)


def send_outcome(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime, outcome: str) -> bool:
    """Move a SIGNED job on by what sending its transaction gave (sent, nonce_used, refused)."""
    if outcome == "refused" and ops.lost(tx_hash=job.tx_hash or "", raw=job.raw):
        return unsign(job_id=job.id, expected=SweepStatus.SIGNED, topup=False, now=now)
    if outcome == "nonce_used":
        # Ours may be the mined one (a crash after the node took it): the receipt decides.
        if ops.adapter.tx_status(job.tx_hash).block_number is None:
            return close(
                job_id=job.id,
                expected=SweepStatus.SIGNED,
                to=SweepStatus.FAILED,
                run=run,
                now=now,
                reason="the deposit address's nonce of this sweep was used by another transaction",
                book=True,
                ops=ops,
            )
    elif outcome != "sent":
        run.waiting += 1
        return False
    step("sweep.sent")
    updated = SweepJob.objects.filter(id=job.id, status=SweepStatus.SIGNED).update(
        status=SweepStatus.BROADCAST, broadcast_at=now, update_time=now
    )
    run.broadcast += updated
    return bool(updated)


def follow(*, job: SweepJob, ops: EvmOps | TronOps, tip: int, run: SweepRun, now: datetime) -> bool:
    status = ops.adapter.tx_status(job.tx_hash)
    if status.block_number is None:
        # Not in a block of the best chain: never seen, dropped by the node, or orphaned by a reorg.
        if not status.found and ops.lost(tx_hash=job.tx_hash or "", raw=job.raw):
            return unsign(job_id=job.id, expected=SweepStatus.BROADCAST, topup=False, now=now)
        if not status.found:
            broadcast(ops=ops, job=job, tx_hash=job.tx_hash or "", raw=job.raw)
        run.waiting += 1
        return False
    confirmations = tip - status.block_number + 1
    canonical = confirmations >= 1 and ops.adapter.block_hash(status.block_number) == status.block_hash
    if confirmations < job.coin.required_confirmations or not canonical:
        SweepJob.objects.filter(id=job.id, status=SweepStatus.BROADCAST).update(
            block_number=status.block_number, block_hash=status.block_hash, update_time=now
        )
        run.waiting += 1
        return False
    amount = coins_selectors.amount_to_base_units(coin=job.coin, amount=job.amount or 0)
    paid = ops.paid(job=job, status=status, amount=amount)
    with transaction.atomic(durable=True):
        locked = job_lock(job.id, SweepStatus.BROADCAST)
        if locked is None:
            return False
        locked.block_number, locked.block_hash = status.block_number, status.block_hash
        settle_fees(locked, ops=ops, sweep_fee=status.fee)
        step("sweep.settled")
        locked.status = SweepStatus.CONFIRMED if paid else SweepStatus.FAILED
        if not paid:
            locked.reason = "mined without moving the amount (reverted, or no Transfer log of it)"
        locked.open_key, locked.confirmed_at, locked.update_time = None, now, now
        locked.save()
    if paid:
        run.confirmed += 1
    else:
        run.failed += 1
        alert(
            kind="SWEEP_FAILED",
            subject=f"sweep {job.job_no}",
            text=f"sweep {job.job_no} of {job.coin_id} from {job.from_address} failed on chain (tx {job.tx_hash}); "
            "its fee is booked; the address is planned again",
        )
    return True


def settle_fees(job: SweepJob, *, ops: EvmOps | TronOps, sweep_fee: int | None) -> None:
    """Book the top-up's and the sweep's network fees (from their receipts) to the house; joins the caller's
    transaction."""
    native = common.native(job.chain_id)
    if job.topup_tx_hash:
        topup_fee = job.topup_fee
        if topup_fee is None:
            fee = ops.adapter.tx_status(job.topup_tx_hash).fee
            topup_fee = common.to_amount(native, fee) if fee is not None else None
            job.topup_fee = topup_fee
        if topup_fee:
            common.fee_book(
                job=job,
                what="topup",
                fee_base_units=coins_selectors.amount_to_base_units(coin=native, amount=topup_fee),
                tx_hash=job.topup_tx_hash,
            )
    if sweep_fee is not None and job.tx_hash:
        job.fee = common.to_amount(native, sweep_fee)
        common.fee_book(job=job, what="sweep", fee_base_units=sweep_fee, tx_hash=job.tx_hash)


def close(
    *,
    job_id: int,
    expected: SweepStatus,
    to: SweepStatus,
    reason: str,
    run: SweepRun,
    now: datetime,
    book: bool = False,
    ops: EvmOps | TronOps | None = None,
) -> bool:
    with transaction.atomic(durable=True):
        locked = job_lock(job_id, expected)
        if locked is None:
            return False
        if book and ops is not None:
            settle_fees(locked, ops=ops, sweep_fee=None)
        locked.status, locked.reason, locked.open_key, locked.update_time = to, reason[:500], None, now
        locked.save()
    if to == SweepStatus.FAILED:
        run.failed += 1
        alert(
            kind="SWEEP_FAILED",
            subject=f"sweep {locked.job_no}",
            text=f"sweep {locked.job_no} of {locked.coin_id} failed: {reason}",
        )
    else:
        run.skipped += 1
    return True


def unsign(*, job_id: int, expected: SweepStatus, topup: bool, now: datetime) -> bool:
    """
    Forget a stored TRON transaction that can never be included now (expired in no block), so the
    step signs a new one. Only ever for a transaction proven lost: nothing can then be paid twice.
    """
    with transaction.atomic(durable=True):
        locked = job_lock(job_id, expected)
        if locked is None:
            return False
        if topup:
            locked.topup_tx_hash, locked.topup_raw, locked.topup_amount, locked.topup_from = None, "", None, ""
            locked.status = SweepStatus.PLANNED
        else:
            locked.tx_hash, locked.raw, locked.amount, locked.signed_at = None, "", None, None
            locked.status = SweepStatus.TOPUP_MINED if locked.coin.contract_address else SweepStatus.PLANNED
        locked.reason, locked.update_time = "a stored transaction expired unsent: signed again", now
        locked.save()
    return True
