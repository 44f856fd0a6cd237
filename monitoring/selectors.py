"""Reads of alerts, their deliveries and the monitoring state (reports may come from the read replica)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Max, QuerySet, Sum

from monitoring.models import (
    Alert,
    AlertDelivery,
    BackupKind,
    BackupRun,
    DeliveryStatus,
    HotBalance,
    ReconciliationRun,
    ReconciliationStatus,
)


def alert_list_open(*, kind: str | None = None) -> QuerySet[Alert]:
    """Return the alerts nobody acknowledged and whose condition has not cleared, most severe first."""
    alerts = Alert.objects.filter(acknowledged_at__isnull=True, resolved_at__isnull=True)
    if kind is not None:
        alerts = alerts.filter(kind=kind)
    return alerts.order_by("-severity", "-last_seen", "-id")


def alert_list_unresolved(*, kind: str) -> list[Alert]:
    """Return the alerts of a kind whose condition has not cleared (open or acknowledged), from the primary."""
    return list(Alert.objects.using("default").filter(kind=kind, resolved_at__isnull=True).order_by("id"))


def alerts_open_by_severity() -> dict[int, int]:
    """Return {severity: number of open alerts} (through the unique open_key index)."""
    rows = Alert.objects.filter(open_key__isnull=False).values("severity").annotate(n=Count("id"))
    return {row["severity"]: row["n"] for row in rows}


def deliveries_by_status(*, statuses: tuple[str, ...] = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)) -> dict:
    """Return {(status, channel): count} of the deliveries in the given statuses (sent ones are not counted)."""
    rows = AlertDelivery.objects.filter(status__in=statuses).values("status", "channel").annotate(n=Count("id"))
    return {(row["status"], row["channel"]): row["n"] for row in rows}


def hot_balance_list() -> list[HotBalance]:
    return list(HotBalance.objects.order_by("chain_id", "coin_id", "address"))


def backup_last_finished() -> dict[str, datetime]:
    """Return {kind: when its last backup finished} for each kind that has one."""
    rows = BackupRun.objects.values("kind").annotate(last=Max("finished_at"))
    return {row["kind"]: row["last"] for row in rows}


def backup_finished_since(*, kind: BackupKind, since: datetime) -> bool:
    return BackupRun.objects.using("default").filter(kind=kind, finished_at__gt=since).exists()


def hot_balance_total(*, coin_id: str, addresses: Collection[str]) -> Decimal | None:
    """
    Return what these hot addresses held of the coin at their last readings, or None if none was read.

    An address whose last reading failed (NULL) counts as nothing; None only when no address has a number.
    """
    found = (
        HotBalance.objects.using("default")
        .filter(coin_id=coin_id, address__in=list(addresses), balance__isnull=False)
        .aggregate(total=Sum("balance"), readings=Count("id"))
    )
    return found["total"] if found["readings"] else None


def reconciliation_latest(*, coin_id: str) -> ReconciliationRun | None:
    """Return the coin's latest reconciliation run that read the chain (a NOT_RUN one proves nothing)."""
    runs = ReconciliationRun.objects.filter(coin_id=coin_id).exclude(status=ReconciliationStatus.NOT_RUN)
    return runs.order_by("-id").first()
