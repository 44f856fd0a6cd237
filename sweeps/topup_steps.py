"""
The gas (energy) top-up steps of an account chain's token sweep (ERC20, TRC20): size the top-up a
token transfer needs, sign and store it from the gas-station hot address (its EVM nonce allocated
under the station's row lock), send it, and follow it until a block holds it (TOPUP_MINED: the token
transfer is signed next, by sweeps.sweep_steps). A station that cannot pay stops the run's further
top-ups and raises an alert.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from addresses import signer
from chains import services as chains_services
from coins import selectors as coins_selectors
from sweeps import common, sweep_steps
from sweeps.chainops import EvmOps, Prepared, TronOps, Wait
from sweeps.common import SweepRun, alert, job_lock, job_wait, step
from sweeps.models import SweepJob, SweepStatus


class GasStationShort(Exception):
    """The gas station cannot pay a top-up now; no further top-up is tried this run."""


def token_planned(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, state: dict[str, Any], now: datetime) -> bool:
    """PLANNED, a token: skip it when the chain shows less than the threshold, else size its gas
    (energy) top-up and sign and store that from the gas station, or go on at once when the address
    holds enough already."""
    try:
        tokens = ops.adapter.balance(job.from_address, contract=job.coin.contract_address)
        if common.to_amount(job.coin, tokens) < (job.coin.sweep_threshold or 0) or tokens <= 0:
            reason = (
                f"holds {common.to_amount(job.coin, tokens).normalize():f} {job.coin_id} on chain, below the threshold"
            )
            return sweep_steps.close(
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
            sweep_steps.terms_set(locked, plan.gas_terms)
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
        sweep_steps.terms_set(locked, gas_terms)
        locked.topup_from, locked.topup_nonce = station, nonce
        locked.topup_amount = common.to_amount(native, prepared.amount_base_units)
        locked.topup_tx_hash, locked.topup_raw = signed.tx_hash, signed.raw
        locked.status, locked.reason, locked.update_time = SweepStatus.TOPUP_SENT, "", now
        locked.save()
    run.topups += 1
    step("topup.signed")
    if sweep_steps.broadcast(ops=ops, job=job, tx_hash=signed.tx_hash, raw=signed.raw) == "sent":
        step("topup.sent")
    return False  # the top-up is followed on the next run, once a block may hold it


def topup_follow(*, job: SweepJob, ops: EvmOps | TronOps, run: SweepRun, now: datetime) -> bool:
    status = ops.adapter.tx_status(job.topup_tx_hash)
    if status.block_number is None:
        if not status.found and ops.lost(tx_hash=job.topup_tx_hash or "", raw=job.topup_raw):
            return sweep_steps.unsign(job_id=job.id, expected=SweepStatus.TOPUP_SENT, topup=True, now=now)
        outcome = sweep_steps.broadcast(ops=ops, job=job, tx_hash=job.topup_tx_hash or "", raw=job.topup_raw)
        if outcome == "nonce_used":
            return sweep_steps.close(
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
            sweep_steps.settle_fees(locked, ops=ops, sweep_fee=None)
            locked.status, locked.reason, locked.open_key = SweepStatus.FAILED, "the gas top-up failed on chain", None
            run.failed += 1
        else:
            locked.status = SweepStatus.TOPUP_MINED
        locked.update_time = now
        locked.save()
    return True
