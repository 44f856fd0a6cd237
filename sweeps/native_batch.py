"""
Ether sweeps of a run signed, stored and sent in chunks (the EVM chain's own coin, PLANNED jobs).

The same steps as one job at a time (sweeps.sweep_steps), for CHUNK jobs at once: their balances
and nonces were read for the whole run in a few batched requests (EvmOps.prefetch); one
transaction locks the chunk's jobs, allocates every deposit address's nonce under its cursor's
lock, signs each sweep (one vault read for the chunk) and stores each signed transaction: SIGNED.
After the commit the chunk's transactions go to the node in two batched requests (their checks,
then the sends) and each answer is handled as a single send's: taken (or known already) → BROADCAST;
refused → an alert, the job stays SIGNED and is sent again (the same bytes) by the next run; its
nonce used by a mined transaction → the receipt decides, as one by one. A worker killed after the
commit leaves SIGNED jobs: the next run sends their stored bytes, never signs them again.

A chunk that cannot be signed as a whole (an address without its key, a database error) is rolled
back whole and its jobs go the one-by-one way, where each fails alone with its reason.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connection, transaction

from addresses import signer
from chains import services as chains_services
from chains.base import ChainError, SignedTx, TxRejected
from sweeps import common, sweep_steps
from sweeps.chainops import EvmOps, Prepared, Skip, Wait
from sweeps.common import NODE_ERRORS, SweepRun, job_wait, step
from sweeps.models import SweepJob, SweepStatus
from sweeps.sweep_steps import JOB_ERRORS

# Jobs signed in one transaction and sent in one batched request (ganache took 20-send batches at
# eight times the rate of single sends; a bigger chunk holds more job rows locked while signing).
CHUNK = 50

_SIGNED_FIELDS = (
    "gas_limit", "max_fee_per_gas", "max_priority_fee_per_gas", "fee_limit", "amount", "nonce", "tx_hash", "raw",
    "status", "reason", "signed_at", "update_time",
)  # fmt: skip
# The columns are the constants above, never input: only the values are parameters.
_UPDATE_SIGNED = f"UPDATE sweep_job SET {', '.join(f'{c} = %s' for c in _SIGNED_FIELDS)} WHERE id = %s"  # noqa: S608


def native_sweeps(*, jobs: list[SweepJob], ops: EvmOps, run: SweepRun, now: datetime) -> list[SweepJob]:
    """Sign, store and send the PLANNED ether sweeps given, CHUNK at a time; return the jobs left to
    the one-by-one way (those of a chunk that could not be signed as a whole)."""
    left: list[SweepJob] = []
    for start in range(0, len(jobs), CHUNK):
        chunk = jobs[start : start + CHUNK]
        try:
            stored = _chunk_sign_store(chunk, ops=ops, run=run, now=now)
        except JOB_ERRORS as exc:
            common.logger.info("sweep chunk not signed as a whole (%s): one by one", type(exc).__name__)
            left.extend(chunk)
            continue
        _chunk_send(stored, ops=ops, run=run, now=now)
    return left


def _chunk_sign_store(chunk: list[SweepJob], *, ops: EvmOps, run: SweepRun, now: datetime) -> list[SweepJob]:
    prepared: dict[int, Prepared] = {}
    for job in chunk:
        try:
            sweep = ops.native_sweep(job)
        except Wait as exc:
            run.waiting += 1
            job_wait(job_id=job.id, reason=str(exc), now=now)
            continue
        if isinstance(sweep, Skip):
            sweep_steps.close(
                job_id=job.id, expected=SweepStatus.PLANNED, to=SweepStatus.SKIPPED, reason=sweep.reason, run=run,
                now=now,
            )  # fmt: skip
        elif not sweep.covered:
            raise ValueError("an ether sweep is sized from the balance it read")
        else:
            prepared[job.id] = sweep
    if not prepared:
        return []
    # The node's pending counts, read before any row is locked (prefetched for the run).
    node_next = {job.from_address: ops.next_nonce(job.from_address) for job in chunk if job.id in prepared}
    with transaction.atomic(durable=True):
        locked = list(
            SweepJob.objects.select_for_update()
            .select_related("coin")
            .filter(id__in=list(prepared), status=SweepStatus.PLANNED)
            .order_by("id")
        )  # another worker moved the others on meanwhile
        if not locked:
            return []
        nonces = chains_services.nonces_allocate(
            chain_id=ops.chain_id, node_next={job.from_address: node_next[job.from_address] for job in locked}
        )
        signed = signer.sign_many([prepared[job.id].build(nonces[job.from_address]) for job in locked])
        for job, tx in zip(locked, signed, strict=True):
            sweep = prepared[job.id]
            sweep_steps.terms_set(job, sweep.terms)
            job.amount = common.to_amount(job.coin, sweep.amount_base_units)
            job.nonce, job.tx_hash, job.raw = nonces[job.from_address], tx.tx_hash, tx.raw
            job.status, job.reason, job.signed_at, job.update_time = SweepStatus.SIGNED, "", now, now
        _signed_store(locked)
    run.signed += len(locked)
    step("sweep.signed")
    return locked


def _signed_store(jobs: list[SweepJob]) -> None:
    """Write each locked job's signed transaction and new state: one UPDATE a row by primary key
    (Django's bulk_update spent longer building its CASE expressions than signing the chunk)."""
    ops = connection.ops
    rows = [
        [
            job.gas_limit, job.max_fee_per_gas, job.max_priority_fee_per_gas, job.fee_limit,
            f"{job.amount:f}" if job.amount is not None else None,  # plain notation, never an exponent
            job.nonce, job.tx_hash, job.raw, job.status, job.reason,
            ops.adapt_datetimefield_value(job.signed_at), ops.adapt_datetimefield_value(job.update_time), job.id,
        ]
        for job in jobs
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.executemany(_UPDATE_SIGNED, rows)


def _chunk_send(jobs: list[SweepJob], *, ops: EvmOps, run: SweepRun, now: datetime) -> None:
    if not jobs:
        return
    try:
        answers = ops.adapter.broadcast_batch([SignedTx(tx_hash=j.tx_hash or "", raw=j.raw) for j in jobs])
    except NODE_ERRORS as exc:
        # Nothing is known of any of them: each stays SIGNED and is sent again by the next run.
        text = f"{type(exc).__name__}: {str(exc)[:300]}"
        for job in jobs:
            run.waiting += 1
            run.errors.append(f"{job.job_no}: {text}")
            job_wait(job_id=job.id, reason=text, now=now)
        return
    taken = [job.id for job, answer in zip(jobs, answers, strict=True) if isinstance(answer, str)]
    if taken:
        step("sweep.sent")
        updated = SweepJob.objects.filter(id__in=taken, status=SweepStatus.SIGNED).update(
            status=SweepStatus.BROADCAST, broadcast_at=now, update_time=now
        )
        run.broadcast += updated
    for job, answer in zip(jobs, answers, strict=True):
        if isinstance(answer, str):
            continue
        try:
            if not isinstance(answer, TxRejected):
                raise answer if isinstance(answer, ChainError) else ChainError(str(answer))
            outcome = sweep_steps.broadcast_outcome(job=job, tx_hash=job.tx_hash or "", refusal=answer)
            sweep_steps.send_outcome(job=job, ops=ops, run=run, now=now, outcome=outcome)
        except JOB_ERRORS as exc:
            # As one by one: the job keeps its state and says why.
            run.waiting += 1
            text = f"{type(exc).__name__}: {str(exc)[:300]}"
            run.errors.append(f"{job.job_no}: {text}")
            job_wait(job_id=job.id, reason=text, now=now)
