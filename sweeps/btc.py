"""
BTC sweeps: the deposit outputs of many addresses consolidated into one transaction to a hot address.

A consolidation is signed only while the node's fee estimate is at most SWEEP_BTC_MAX_FEE_RATE_SAT_VB
(quiet hours are cheap; the deposits wait otherwise), at that rate. It spends every free deposit
output with the coin's confirmations that is worth more than its input costs (~68 vB x the rate),
largest first, at most SWEEP_BTC_MAX_INPUTS, once together they reach the coin's sweep_threshold.
Outputs worth less stay and wait for cheaper fees. The outputs are locked in btc_utxo by the job's
number in the transaction that creates the job with its signed transaction (status SIGNED), so a
crash leaves either nothing or a stored transaction that the next run sends. A transaction a reorg
took out of its block is sent again, the same bytes: it is mined once, and the sweep settled once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from addresses import signer
from chains.base import ChainAdapter, SignedTx, TxRejected
from chains.btc import p2wpkh_vsize
from coins import selectors as coins_selectors
from recharges import selectors as recharges_selectors
from sweeps import common
from sweeps.common import NODE_ERRORS, SweepRun, alert, job_lock, job_wait, step
from sweeps.models import SweepJob, SweepStatus
from utxos import locking as utxos_locking
from wallet_project.ids import business_no

CONSOLIDATION_KEY = "BTC|consolidation"


class _TooLittle(Exception):
    """The free deposit outputs worth sweeping do not reach the threshold: roll the locks back."""


def btc_run(*, adapter: ChainAdapter, now: datetime | None = None) -> SweepRun:
    """Follow the open consolidation (send, confirm), or sign a new one when fees are low enough."""
    moment = now or timezone.now()
    run = SweepRun(chain_id="BTC")
    try:
        tip = adapter.tip_height()
        for job in common.open_jobs(chain_id="BTC").select_related("coin"):
            _follow(job=job, adapter=adapter, tip=tip, run=run, now=moment)
        if not common.open_jobs(chain_id="BTC").exists():
            _consolidate(adapter=adapter, run=run, now=moment)
    except NODE_ERRORS as exc:
        text = f"BTC sweep failed: {type(exc).__name__}: {str(exc)[:300]}"
        run.errors.append(text)
        alert(kind="NODE_DOWN", subject="chain BTC", text=text)
    return run


def _consolidate(*, adapter: ChainAdapter, run: SweepRun, now: datetime) -> None:
    coin = common.native("BTC")
    if coin.sweep_threshold is None or coin.coin_id in common.paused_coins():
        return
    height = recharges_selectors.scan_height(chain_id="BTC")
    if height is None:
        return
    rate = adapter.fee_estimate()
    if rate > settings.SWEEP_BTC_MAX_FEE_RATE_SAT_VB:
        run.waiting += 1
        common.logger.info("BTC sweep waits: fee rate %s sat/vB above %s", rate, settings.SWEEP_BTC_MAX_FEE_RATE_SAT_VB)
        return
    input_cost = (p2wpkh_vsize(2, 1) - p2wpkh_vsize(1, 1)) * rate
    threshold = coins_selectors.amount_to_base_units(coin=coin, amount=coin.sweep_threshold)
    target = common.hot_target(chain_id="BTC")
    job_no = business_no(prefix="S", now=now)
    try:
        with transaction.atomic(durable=True):
            utxos = utxos_locking.utxos_lock_for_sweep(
                sweep_ref=job_no,
                tip_height=height,
                min_confirmations=coin.required_confirmations,
                min_value_sats=input_cost,
                max_inputs=settings.SWEEP_BTC_MAX_INPUTS,
                now=now,
            )
            total = sum(u.value_sats for u in utxos)
            # Priced as build_transfer prices it (with room for a change output it then leaves out).
            amount = total - p2wpkh_vsize(len(utxos), 2) * rate
            if not utxos or total < threshold or amount <= input_cost:
                raise _TooLittle
            unsigned = adapter.build_transfer(
                from_address=target,
                to_address=target,
                amount_base_units=amount,
                utxos=[u.as_input() for u in utxos],
                fee_rate_sat_vb=rate,
            )
            signed = signer.sign_btc_inputs(unsigned, input_addresses=[u.address for u in utxos])
            job = SweepJob.objects.create(
                job_no=job_no,
                chain_id="BTC",
                coin=coin,
                to_address=target,
                status=SweepStatus.SIGNED,
                planned_amount=coins_selectors.amount_from_base_units(coin=coin, base_units=total),
                amount=coins_selectors.amount_from_base_units(coin=coin, base_units=amount),
                inputs=len(utxos),
                fee=coins_selectors.amount_from_base_units(coin=coin, base_units=total - amount),
                tx_hash=signed.tx_hash,
                raw=signed.raw,
                open_key=CONSOLIDATION_KEY,
                create_time=now,
                update_time=now,
                signed_at=now,
            )
            utxos_locking.utxos_spend_pending(payout_ref=job_no, txid=signed.tx_hash)
    except _TooLittle:
        return
    run.signed += 1
    step("sweep.signed")
    _send(job=job, adapter=adapter, run=run, now=now)


def _send(*, job: SweepJob, adapter: ChainAdapter, run: SweepRun, now: datetime) -> bool:
    try:
        adapter.broadcast_irreversible(SignedTx(tx_hash=job.tx_hash or "", raw=job.raw))
    except TxRejected as exc:
        run.waiting += 1
        alert(
            kind="SWEEP_BROADCAST_REJECTED",
            subject=f"sweep {job.job_no}",
            text=f"the node refused the BTC consolidation {job.tx_hash} of sweep {job.job_no}: {str(exc)[:200]}",
        )
        job_wait(job_id=job.id, reason=str(exc)[:500], now=now)
        return False
    step("sweep.sent")
    run.broadcast += SweepJob.objects.filter(id=job.id, status=SweepStatus.SIGNED).update(
        status=SweepStatus.BROADCAST, broadcast_at=now, update_time=now
    )
    return True


def _follow(*, job: SweepJob, adapter: ChainAdapter, tip: int, run: SweepRun, now: datetime) -> None:
    if job.status == SweepStatus.SIGNED:
        if not _send(job=job, adapter=adapter, run=run, now=now):
            return
        job.refresh_from_db()
    status = adapter.tx_status(job.tx_hash or "")
    if status.block_number is None:
        if not status.found:  # never taken, or a reorg emptied the mempool: the same bytes again
            _resend(job=job, adapter=adapter)
        run.waiting += 1
        return
    confirmations = tip - status.block_number + 1
    canonical = adapter.block_hash(status.block_number) == status.block_hash
    if confirmations < job.coin.required_confirmations or not canonical:
        SweepJob.objects.filter(id=job.id).update(
            block_number=status.block_number, block_hash=status.block_hash, update_time=now
        )
        run.waiting += 1
        return
    with transaction.atomic(durable=True):
        locked: Any = job_lock(job.id, SweepStatus.BROADCAST)
        if locked is None:
            return
        fee = coins_selectors.amount_to_base_units(coin=locked.coin, amount=locked.fee or 0)
        common.fee_book(job=locked, what="sweep", fee_base_units=fee, tx_hash=locked.tx_hash)
        step("sweep.settled")
        locked.block_number, locked.block_hash = status.block_number, status.block_hash
        locked.status, locked.open_key, locked.confirmed_at, locked.update_time = SweepStatus.CONFIRMED, None, now, now
        locked.save()
    run.confirmed += 1


def _resend(*, job: SweepJob, adapter: ChainAdapter) -> None:
    try:
        adapter.broadcast_irreversible(SignedTx(tx_hash=job.tx_hash or "", raw=job.raw))
    except TxRejected as exc:
        alert(
            kind="SWEEP_BROADCAST_REJECTED",
            subject=f"sweep {job.job_no}",
            text=f"the node refused the BTC consolidation {job.tx_hash} of sweep {job.job_no} again: {str(exc)[:200]}",
        )
