"""What every sweep step shares: the fault hook, alerts, results, job locking and fee booking."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet

from addresses import selectors as addresses_selectors
from assets import house as assets_house
from assets.models import BusinessType, HouseAccount
from chains.base import ChainError
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from monitoring import services as monitoring_services
from monitoring.models import Severity
from sweeps.models import OPEN_STATUSES, SweepJob, SweepPause, SweepStatus

logger = logging.getLogger("sweeps")

# Fault injection: tests set this to a callable that raises, waits or kills the process at a named
# step ("topup.signed" after the top-up is stored, "topup.sent" once a node took it, "sweep.signed"
# after the sweep is stored, "sweep.sent" once a node took it, "sweep.settled" inside the settlement
# after the fees were booked). Always None in a running service.
fault_hook: Callable[[str], None] | None = None

NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError)


def step(name: str) -> None:
    """Call the tests' fault hook at a named step; no-op in service."""
    if fault_hook is not None:
        fault_hook(name)


@dataclass
class SweepRun:
    """What one run of a chain did."""

    chain_id: str
    planned: int = 0
    signed: int = 0  # sweep transactions signed (BTC: one per consolidation)
    topups: int = 0
    broadcast: int = 0
    confirmed: int = 0
    failed: int = 0
    skipped: int = 0
    waiting: int = 0  # jobs that could not move on this run (fees high, node down, gas station short)
    errors: list[str] = field(default_factory=list)

    def add(self, other: SweepRun) -> None:
        """Count another part of the same run (a worker thread's) in this one."""
        for name in ("planned", "signed", "topups", "broadcast", "confirmed", "failed", "skipped", "waiting"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.errors.extend(other.errors)


def alert(*, kind: str, subject: str, text: str, severity: Severity = Severity.WARNING) -> None:
    logger.warning("%s %s: %s", kind, subject, text)
    monitoring_services.alert_raise_alone(severity=severity, kind=kind, subject=subject, message=text)


def open_key(*, chain_id: str, address: str) -> str:
    """The open_key of a job: one open job per deposit address (BTC: one consolidation per chain)."""
    return f"{chain_id}|{address}"


def paused_coins() -> set[str]:
    return set(SweepPause.objects.filter(paused=True).values_list("coin_id", flat=True))


def open_jobs(*, chain_id: str) -> QuerySet[SweepJob]:
    return SweepJob.objects.filter(chain_id=chain_id, status__in=OPEN_STATUSES).order_by("id")


def job_lock(job_id: int, *expected: SweepStatus) -> SweepJob | None:
    """Lock a job; None when it is no longer in one of the expected states (another worker moved it)."""
    job = SweepJob.objects.select_for_update().select_related("coin").get(id=job_id)
    return job if job.status in expected else None


def hot_target(*, chain_id: str) -> str:
    """The hot address sweeps of chain_id go to: the first enabled one of SWEEP_HOT_WALLET_TYPE."""
    row = addresses_selectors.hot_addresses(chain_id=chain_id, wallet_type=settings.SWEEP_HOT_WALLET_TYPE).first()
    if row is None:
        raise LookupError(f"no enabled hot address of pool {settings.SWEEP_HOT_WALLET_TYPE!r} on {chain_id}")
    return row.address


def gas_station(*, chain_id: str) -> str:
    row = addresses_selectors.hot_addresses(chain_id=chain_id, wallet_type=settings.GAS_STATION_WALLET_TYPE).first()
    if row is None:
        raise LookupError(f"no enabled gas-station address (pool {settings.GAS_STATION_WALLET_TYPE!r}) on {chain_id}")
    return row.address


def native(chain_id: str) -> CoinConfig:
    return coins_selectors.chain_native_coin(chain_id=chain_id)


def to_amount(coin: CoinConfig, base_units: int) -> Decimal:
    return coins_selectors.amount_from_base_units(coin=coin, base_units=base_units)


def fee_book(*, job: SweepJob, what: str, fee_base_units: int | None, tx_hash: str) -> None:
    """
    Book a network fee the job's transaction paid (from its receipt) to the house's network-fee
    account of the chain's own coin; once per transaction (biz_ref job_no-what). Joins the caller's
    transaction: the one that records the mined sweep.
    """
    if not fee_base_units:
        return
    coin = native(job.chain_id)
    assets_house.house_book(
        coin=coin,
        account=HouseAccount.NETWORK_FEES,
        amount=-to_amount(coin, fee_base_units),
        business_type=BusinessType.HOUSE_NETWORK_FEE,
        biz_ref=f"{job.job_no}-{what}",
        ref_tx_hash=tx_hash,
        memo=f"sweep {job.job_no} {what} ({job.coin_id})",
    )


def job_wait(*, job_id: int, reason: str, now: datetime) -> None:
    """Count a run that could not move the job on, and say why (shown in the admin)."""
    from django.db.models import F

    SweepJob.objects.filter(id=job_id).update(attempts=F("attempts") + 1, reason=reason[:500], update_time=now)
