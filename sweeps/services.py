"""
Writes of the sweeps app other than the job steps: a chain's run (the beat's entry point), and
what ops do in the admin: pause and resume a coin's sweeps, retry a failed sweep.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from chains import registry as chains_registry
from chains.base import ChainAdapter
from coins.models import CoinConfig
from sweeps import account, btc
from sweeps.common import SweepRun, open_key
from sweeps.models import SweepJob, SweepOpsLog, SweepPause, SweepStatus
from wallet_project.errors import Conflict, WalletError
from wallet_project.ids import business_no

SWEEP_CHAINS = ("BTC", "ETH", "TRON")


def sweeps_run(*, chain_id: str, now: datetime | None = None, adapter: ChainAdapter | None = None) -> SweepRun:
    """Plan and move on the sweeps of one chain (BTC: consolidate its deposit outputs)."""
    if chain_id not in SWEEP_CHAINS:
        return SweepRun(chain_id=chain_id, errors=[f"sweeps of {chain_id} are not built"])
    adapter = adapter or chains_registry.adapter_for(chain_id)
    if chain_id == "BTC":
        return btc.btc_run(adapter=adapter, now=now)
    return account.account_run(chain_id=chain_id, adapter=adapter, now=now)


def _remark(remark: str) -> str:
    text = (remark or "").strip()
    if not text:
        raise WalletError("Say why (a remark is required).", field="remark")
    return text[:500]


@transaction.atomic(durable=True)
def sweeps_pause(*, coin_id: str, paused: bool, user: AbstractBaseUser, remark: str) -> SweepPause:
    """
    Pause (or resume) the sweeps of a coin: while paused none is planned or signed; what is already
    sent is followed to its end. Recorded with who and why.
    """
    text = _remark(remark)
    now = timezone.now()
    coin = CoinConfig.objects.select_for_update().get(coin_id=coin_id)
    row, _ = SweepPause.objects.select_for_update().update_or_create(
        coin=coin, defaults={"paused": paused, "remark": text, "changed_by": user, "update_time": now}
    )
    SweepOpsLog.objects.create(
        action="pause" if paused else "resume", coin=coin, user=user, remark=text, create_time=now
    )
    return row


@transaction.atomic(durable=True)
def sweep_retry(*, job_id: int, user: AbstractBaseUser, remark: str) -> SweepJob:
    """
    Plan a failed sweep of a deposit address again at once (a new job; the failed one stays as it is).

    :raises Conflict: the job did not fail, is a BTC consolidation (the next run makes a new one), or
        the address has an open sweep already.
    """
    text = _remark(remark)
    now = timezone.now()
    job = SweepJob.objects.select_for_update().get(id=job_id)
    if job.status != SweepStatus.FAILED or job.address_id is None:
        raise Conflict(
            f"Sweep {job.job_no} is {job.get_status_display()}: only a failed sweep of an address is retried."
        )
    key = open_key(chain_id=job.chain_id, address=job.from_address)
    if SweepJob.objects.filter(open_key=key).exists():
        raise Conflict(f"{job.from_address} has an open sweep already.")
    again = SweepJob.objects.create(
        job_no=business_no(prefix="S", now=now),
        chain_id=job.chain_id,
        coin_id=job.coin_id,
        address_id=job.address_id,
        from_address=job.from_address,
        to_address=job.to_address,
        status=SweepStatus.PLANNED,
        planned_amount=job.planned_amount,
        credited_mark=job.credited_mark,
        open_key=key,
        retried_by=user,
        create_time=now,
        update_time=now,
    )
    SweepOpsLog.objects.create(action="retry", coin_id=job.coin_id, job=job, user=user, remark=text, create_time=now)
    return again
