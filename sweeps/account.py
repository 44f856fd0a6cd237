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
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from django import db
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from addresses import signer
from chains import services as chains_services
from chains.base import ChainAdapter, NonceUsed, SignedTx, TxRejected
from coins import selectors as coins_selectors
from monitoring.models import Severity
from sweeps import common
from sweeps.chainops import EvmOps, Prepared, Skip, TronOps, Wait, ops_for
from sweeps.common import NODE_ERRORS, SweepRun, alert, job_lock, job_wait, step
from sweeps.models import SweepJob, SweepStatus
from sweeps.planning import sweeps_plan
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


class GasStationShort(Exception):
    """The gas station cannot pay a top-up now; no further top-up is tried this run."""


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
        # Ether sweeps to sign: their balances and nonces in a few batched requests, not two calls each.
        due = [j.from_address for j in jobs if j.status == SweepStatus.PLANNED and not j.coin.contract_address]
        try:
            ops.prefetch(due)
        except NODE_ERRORS as exc:
            common.logger.info("sweep prefetch of %s failed (%s): read one by one", chain_id, type(exc).__name__)
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
            moved = _topup_follow(job=job, ops=ops, run=run, now=now)
        elif status == SweepStatus.TOPUP_MINED:
            moved = _token_sign(job=job, ops=ops, run=run, now=now)
        elif status == SweepStatus.SIGNED:
            moved = _send(job=job, ops=ops, run=run, now=now)
        elif status == SweepStatus.BROADCAST:
            moved = _follow(job=job, ops=ops, tip=tip, run=run, now=now)
        else:
            return
        if not moved or status == SweepStatus.SIGNED:
            # Just sent: no block holds it yet, so it is followed on the next run (one node call saved).
            return
        job = SweepJob.objects.select_related("coin").get(id=job.id)


# --- PLANNED -------------------------------------------------------------------------------
def _planned(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, state: dict[str, Any], now: datetime) -> bool:
    try:
        if coins_selectors.coin_is_native(coin=job.coin):
            prepared = ops.native_sweep(job)
            if isinstance(prepared, Skip):
                return _close(
                    job_id=job.id,
                    expected=SweepStatus.PLANNED,
                    to=SweepStatus.SKIPPED,
                    reason=prepared.reason,
                    run=run,
                    now=now,
                )
            return _sign_store(job=job, ops=ops, expected=SweepStatus.PLANNED, prepared=prepared, run=run, now=now)
        tokens = ops.adapter.balance(job.from_address, contract=job.coin.contract_address)
        if common.to_amount(job.coin, tokens) < (job.coin.sweep_threshold or 0) or tokens <= 0:
            reason = (
                f"holds {common.to_amount(job.coin, tokens).normalize():f} {job.coin_id} on chain, below the threshold"
            )
            return _close(
                job_id=job.id, expected=SweepStatus.PLANNED, to=SweepStatus.SKIPPED, reason=reason, run=run, now=now
            )
        plan = ops.token_plan(job, tokens)
    except Wait as exc:
        run.waiting += 1
        job_wait(job_id=job.id, reason=str(exc), now=now)
        return False
    if plan.topup_base_units == 0:
        with transaction.atomic(durable=True):
            locked = job_lock(job.id, SweepStatus.PLANNED)
            if locked is None:
                return False
            _terms_set(locked, plan.gas_terms)
            locked.status, locked.update_time = SweepStatus.TOPUP_MINED, now
            locked.save()
        return True
    if state["station_short"]:
        run.waiting += 1
        return False
    station = common.gas_station(chain_id=job.chain_id)
    prepared = ops.topup(job=job, station=station, amount=plan.topup_base_units)
    try:
        return _topup_sign(
            job=job, ops=ops, station=station, prepared=prepared, gas_terms=plan.gas_terms, run=run, now=now
        )
    except GasStationShort as exc:
        state["station_short"] = True
        run.waiting += 1
        alert(kind="SWEEP_GAS_STATION_SHORT", subject=f"chain {job.chain_id}", text=str(exc))
        job_wait(job_id=job.id, reason=str(exc)[:500], now=now)
        return False


def _terms_set(job: SweepJob, terms: dict[str, int]) -> None:
    job.gas_limit = terms.get("gas_limit")
    job.max_fee_per_gas = terms.get("max_fee_per_gas") or terms.get("gas_price")
    job.max_priority_fee_per_gas = terms.get("max_priority_fee_per_gas")
    job.fee_limit = terms.get("fee_limit")


def _topup_reserved(*, station: str) -> int:
    """What the station's top-ups not yet recorded mined promise (the node's balance does not show them)."""
    native = None
    total = 0
    for job in SweepJob.objects.filter(topup_from=station, status=SweepStatus.TOPUP_SENT).select_related("coin"):
        native = native or common.native(job.chain_id)
        total += coins_selectors.amount_to_base_units(coin=native, amount=job.topup_amount or 0)
    return total


def _topup_sign(
    *,
    job: SweepJob,
    ops: EvmOps | TronOps,
    station: str,
    prepared: Prepared,
    gas_terms: dict[str, int],
    run: SweepRun,
    now: datetime,
) -> bool:
    node_next = ops.next_nonce(station) if ops.nonces else None
    reserved = _topup_reserved(station=station)
    with transaction.atomic(durable=True):
        locked = job_lock(job.id, SweepStatus.PLANNED)
        if locked is None:
            return False
        nonce = None
        if node_next is not None:
            nonce = chains_services.nonce_allocate(chain_id=job.chain_id, address=station, node_next=node_next)
        unsigned = prepared.build(nonce)
        short = ops.adapter.shortfall(unsigned, reserved_native=reserved)
        if short is not None:
            raise GasStationShort(f"gas station {station} cannot pay the top-up of sweep {job.job_no}: {short}")
        signed = signer.signer_for(job.chain_id)(unsigned)
        native = common.native(job.chain_id)
        _terms_set(locked, gas_terms)
        locked.topup_from, locked.topup_nonce = station, nonce
        locked.topup_amount = common.to_amount(native, prepared.amount_base_units)
        locked.topup_tx_hash, locked.topup_raw = signed.tx_hash, signed.raw
        locked.status, locked.reason, locked.update_time = SweepStatus.TOPUP_SENT, "", now
        locked.save()
    run.topups += 1
    step("topup.signed")
    if _broadcast(ops=ops, job=job, tx_hash=signed.tx_hash, raw=signed.raw) == "sent":
        step("topup.sent")
    return False  # the top-up is followed on the next run, once a block may hold it


# --- TOPUP_SENT ----------------------------------------------------------------------------
def _topup_follow(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime) -> bool:
    status = ops.adapter.tx_status(job.topup_tx_hash)
    if status.block_number is None:
        if not status.found and ops.lost(tx_hash=job.topup_tx_hash or "", raw=job.topup_raw):
            return _unsign(job_id=job.id, expected=SweepStatus.TOPUP_SENT, topup=True, now=now)
        outcome = _broadcast(ops=ops, job=job, tx_hash=job.topup_tx_hash or "", raw=job.topup_raw)
        if outcome == "nonce_used":
            return _close(
                job_id=job.id,
                expected=SweepStatus.TOPUP_SENT,
                to=SweepStatus.FAILED,
                run=run,
                now=now,
                reason="the gas station's nonce of this top-up was used by another transaction",
            )
        run.waiting += 1
        return False
    native = common.native(job.chain_id)
    with transaction.atomic(durable=True):
        locked = job_lock(job.id, SweepStatus.TOPUP_SENT)
        if locked is None:
            return False
        locked.topup_block = status.block_number
        locked.topup_fee = common.to_amount(native, status.fee) if status.fee is not None else None
        if not status.success:
            _settle_fees(locked, ops=ops, sweep_fee=None)
            locked.status, locked.reason, locked.open_key = SweepStatus.FAILED, "the gas top-up failed on chain", None
            run.failed += 1
        else:
            locked.status = SweepStatus.TOPUP_MINED
        locked.update_time = now
        locked.save()
    return True


# --- TOPUP_MINED: the token transfer ---------------------------------------------------------
def _token_sign(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime) -> bool:
    tokens = ops.adapter.balance(job.from_address, contract=job.coin.contract_address)
    if tokens <= 0:
        return _close(
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
    return _sign_store(job=job, ops=ops, expected=SweepStatus.TOPUP_MINED, prepared=prepared, run=run, now=now)


def _sign_store(
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
            _terms_set(locked, prepared.terms)
        locked.amount = common.to_amount(locked.coin, prepared.amount_base_units)
        locked.nonce, locked.tx_hash, locked.raw = nonce, signed.tx_hash, signed.raw
        locked.status, locked.reason, locked.signed_at, locked.update_time = SweepStatus.SIGNED, "", now, now
        locked.save()
    run.signed += 1
    step("sweep.signed")
    return True


# --- SIGNED / BROADCAST ----------------------------------------------------------------------
def _broadcast(*, ops: EvmOps | TronOps, job: SweepJob, tx_hash: str, raw: str) -> str:
    """Send a stored transaction (again): sent, nonce_used (a mined transaction took its nonce), or refused."""
    try:
        ops.adapter.broadcast_irreversible(SignedTx(tx_hash=tx_hash, raw=raw))
    except NonceUsed:
        return "nonce_used"
    except TxRejected as exc:
        alert(
            kind="SWEEP_BROADCAST_REJECTED",
            subject=f"sweep {job.job_no}",
            severity=Severity.WARNING,
            text=f"the node refused transaction {tx_hash} of sweep {job.job_no} ({job.coin_id} from "
            f"{job.from_address}): {str(exc)[:200]}",
        )
        return "refused"
    return "sent"


def _send(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime) -> bool:
    outcome = _broadcast(ops=ops, job=job, tx_hash=job.tx_hash or "", raw=job.raw)
    if outcome == "refused" and ops.lost(tx_hash=job.tx_hash or "", raw=job.raw):
        return _unsign(job_id=job.id, expected=SweepStatus.SIGNED, topup=False, now=now)
    if outcome == "nonce_used":
        # Ours may be the mined one (a crash after the node took it): the receipt decides.
        if ops.adapter.tx_status(job.tx_hash).block_number is None:
            return _close(
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


def _follow(*, job: SweepJob, ops: EvmOps | TronOps, tip: int, run: SweepRun, now: datetime) -> bool:
    status = ops.adapter.tx_status(job.tx_hash)
    if status.block_number is None:
        # Not in a block of the best chain: never seen, dropped by the node, or orphaned by a reorg.
        if not status.found and ops.lost(tx_hash=job.tx_hash or "", raw=job.raw):
            return _unsign(job_id=job.id, expected=SweepStatus.BROADCAST, topup=False, now=now)
        if not status.found:
            _broadcast(ops=ops, job=job, tx_hash=job.tx_hash or "", raw=job.raw)
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
        _settle_fees(locked, ops=ops, sweep_fee=status.fee)
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


def _settle_fees(job: SweepJob, *, ops: EvmOps | TronOps, sweep_fee: int | None) -> None:
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


def _close(
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
            _settle_fees(locked, ops=ops, sweep_fee=None)
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


def _unsign(*, job_id: int, expected: SweepStatus, topup: bool, now: datetime) -> bool:
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
