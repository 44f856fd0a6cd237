"""
The sweep jobs of an account chain (ETH, TRON), one step at a time, resumable at any line.

PLANNED → (token: TOPUP_SENT → TOPUP_MINED, or TOPUP_MINED at once when the address holds enough
gas) → SIGNED → BROADCAST → CONFIRMED, or FAILED with the reason, or SKIPPED (worth less than it
costs: left to grow). Each transaction is signed and stored in the transaction that locks the job
and moves its state (and allocates the sender's EVM nonce); it is sent after the commit, and sent
again (the same bytes) by every later run until a block holds it. A worker killed anywhere leaves
a job whose state says what comes next: nothing is signed twice for one step, nothing is sent that
is not stored. The fees the job's transactions paid are booked to the house account, from their
receipts, in the transaction that records the sweep settled.

Here: a chain's run (plan, then move each open job on, in a few threads) and the PLANNED step's
choice. The steps themselves: sweeps.topup_steps (a token's gas or energy top-up),
sweeps.sweep_steps (the sweep transaction: sign, store, send, follow, settle) and
sweeps.native_batch (a run's ether sweeps a chunk at a time).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django import db
from django.conf import settings
from django.utils import timezone

from chains.base import ChainAdapter
from coins import selectors as coins_selectors
from sweeps import common, native_batch, sweep_steps, topup_steps
from sweeps.chainops import EvmOps, TronOps, Wait, ops_for
from sweeps.common import NODE_ERRORS, SweepRun, alert, job_wait
from sweeps.models import SweepJob, SweepStatus
from sweeps.planning import sweeps_plan
from sweeps.sweep_steps import JOB_ERRORS


def account_run(*, chain_id: str, adapter: ChainAdapter, now: datetime | None = None) -> SweepRun:
    """Plan the chain's sweeps, then move every open job on as far as it goes now."""
    moment = now or timezone.now()
    run = SweepRun(chain_id=chain_id)
    ops = ops_for(chain_id, adapter)
    native = common.native(chain_id)
    try:
        cost = {native.coin_id: common.to_amount(native, 2 * ops.native_cost())}
        run.planned = sweeps_plan(chain_id=chain_id, now=moment, cost=cost)
        tip = adapter.tip_height()
    except (*NODE_ERRORS, Wait, LookupError) as exc:
        text = f"sweep planning of {chain_id} failed: {type(exc).__name__}: {str(exc)[:300]}"
        run.errors.append(text)
        alert(
            kind="NODE_DOWN" if isinstance(exc, NODE_ERRORS) else "SWEEP_WAITS", subject=f"chain {chain_id}", text=text
        )
        return run
    paused = common.paused_coins()
    state: dict[str, Any] = {"station_short": False}
    jobs = list(common.open_jobs(chain_id=chain_id).select_related("coin")[: settings.SWEEP_BATCH])
    if isinstance(ops, EvmOps):
        # Ether sweeps to sign: their balances and nonces in a few batched requests, not two calls each,
        # then signed, stored and sent a chunk at a time (sweeps.native_batch).
        due = [
            j
            for j in jobs
            if j.status == SweepStatus.PLANNED and not j.coin.contract_address and j.coin_id not in paused
        ]
        try:
            ops.prefetch([j.from_address for j in due])
        except NODE_ERRORS as exc:
            common.logger.info("sweep prefetch of %s failed (%s): read one by one", chain_id, type(exc).__name__)
        batched = {j.id for j in due}
        left = native_batch.native_sweeps(jobs=due, ops=ops, run=run, now=moment)
        jobs = [j for j in jobs if j.id not in batched] + left
    if not jobs:
        return run
    workers = max(1, min(settings.SWEEP_WORKERS, len(jobs)))
    if workers == 1:
        _jobs_advance(jobs=jobs, ops=ops, tip=tip, paused=paused, run=run, state=state, now=moment)
        return run
    # Jobs of different addresses share nothing but the gas station's nonce row (locked in turn):
    # a few threads keep the node and the database busy while one waits for the other.
    parts = [SweepRun(chain_id=chain_id) for _ in range(workers)]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sweep") as pool:
        futures = [
            pool.submit(
                _jobs_advance_thread, jobs=jobs[i::workers], ops=ops, tip=tip, paused=paused, run=parts[i],
                state=state, now=moment,
            )
            for i in range(workers)
        ]  # fmt: skip
        for future in futures:
            future.result()  # a crash in a thread is the run's crash
    for part in parts:
        run.add(part)
    return run


def _jobs_advance_thread(**kwargs: Any) -> None:
    try:
        _jobs_advance(**kwargs)
    finally:
        db.connections.close_all()  # this thread's own connection


def _jobs_advance(
    *, jobs: list[SweepJob], ops: EvmOps | TronOps, tip: int, paused: set[str], run: SweepRun,
    state: dict[str, Any], now: datetime,
) -> None:  # fmt: skip
    for job in jobs:
        try:
            _advance(job=job, ops=ops, tip=tip, paused=paused, run=run, state=state, now=now)
        except JOB_ERRORS as exc:
            # One failing address never stops the others: the job keeps its state and says why.
            run.waiting += 1
            text = f"{type(exc).__name__}: {str(exc)[:300]}"
            run.errors.append(f"{job.job_no}: {text}")
            job_wait(job_id=job.id, reason=text, now=now)


def _advance(
    *,
    job: SweepJob,
    ops: EvmOps | TronOps,
    tip: int,
    paused: set[str],
    run: SweepRun,
    state: dict[str, Any],
    now: datetime,
) -> None:
    for _ in range(6):
        status = job.status
        if status in (SweepStatus.PLANNED, SweepStatus.TOPUP_MINED) and job.coin_id in paused:
            return  # nothing new is signed while ops pause the coin; what is sent is followed
        if status == SweepStatus.PLANNED:
            moved = _planned(job=job, ops=ops, run=run, state=state, now=now)
        elif status == SweepStatus.TOPUP_SENT:
            moved = topup_steps.topup_follow(job=job, ops=ops, run=run, now=now)
        elif status == SweepStatus.TOPUP_MINED:
            moved = sweep_steps.token_sign(job=job, ops=ops, run=run, now=now)
        elif status == SweepStatus.SIGNED:
            moved = sweep_steps.send(job=job, ops=ops, run=run, now=now)
        elif status == SweepStatus.BROADCAST:
            moved = sweep_steps.follow(job=job, ops=ops, tip=tip, run=run, now=now)
        else:
            return
        if not moved or status == SweepStatus.SIGNED:
            # Just sent: no block holds it yet, so it is followed on the next run (one node call saved).
            return
        job = SweepJob.objects.select_related("coin").get(id=job.id)


def _planned(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, state: dict[str, Any], now: datetime) -> bool:
    if coins_selectors.coin_is_native(coin=job.coin):
        try:
            return sweep_steps.native_planned(job=job, ops=ops, run=run, now=now)
        except Wait as exc:
            run.waiting += 1
            job_wait(job_id=job.id, reason=str(exc), now=now)
            return False
    return topup_steps.token_planned(job=job, ops=ops, run=run, state=state, now=now)
