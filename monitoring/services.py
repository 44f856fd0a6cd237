"""Alert writes: every app raises its alerts through alert_raise; checks resolve them with alert_resolve."""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from monitoring import delivery, kinds
from monitoring.models import Alert, DeliveryEvent, Severity
from wallet_project.errors import WalletError
from wallet_project.logging import redact

logger = logging.getLogger(__name__)


def _open_key(kind: str, subject: str) -> str:
    return f"{kind}|{subject}"[:200]


@transaction.atomic(savepoint=False)
def alert_raise(
    *, severity: Severity | None = None, kind: str, subject: str, message: str, now: datetime | None = None
) -> Alert:
    """
    Record an alert, or count one more occurrence of the same open alert (same kind and subject).

    A new alert, or a higher severity, queues its deliveries (webhook, email) in the same
    transaction. An alert of a kind that resolves itself stays one alert after it was
    acknowledged: repeats are counted on it, nobody is messaged again, until its condition clears.
    Joins the caller's transaction: an alert about a change that rolls back rolls back with it.
    Callers reporting a failure that rolls their own work back raise the alert in a transaction
    of its own, after the rollback (alert_raise_alone).
    """
    moment = now or timezone.now()
    registered = kinds.kind_get(kind)
    level = Severity(severity if severity is not None else registered.severity)
    text = redact(message)
    key = _open_key(kind, subject)
    alerts = Alert.objects.using("default")  # never the replica: this transaction just wrote it
    updated = alerts.filter(open_key=key).update(count=F("count") + 1, last_seen=moment, message=text)
    if updated:
        alert = alerts.get(open_key=key)
        if level > alert.severity:
            alert.severity = level
            alert.save(update_fields=["severity"])
            delivery.deliveries_enqueue(alert=alert, event=DeliveryEvent.ESCALATED, now=moment)
        return alert
    if registered.resolves_itself:
        watched = (
            alerts.filter(kind=kind, subject=subject, resolved_at__isnull=True, acknowledged_at__isnull=False)
            .order_by("-id")
            .first()
        )
        if watched is not None:
            alerts.filter(id=watched.id).update(count=F("count") + 1, last_seen=moment, message=text)
            watched.refresh_from_db()
            return watched
    try:
        with transaction.atomic():
            alert = alerts.create(
                severity=level,
                kind=kind,
                subject=subject,
                message=text,
                first_seen=moment,
                last_seen=moment,
                open_key=key,
            )
    except IntegrityError:
        # Another process opened the same alert between our update and insert.
        alerts.filter(open_key=key).update(count=F("count") + 1, last_seen=moment, message=text)
        return alerts.get(open_key=key)
    delivery.deliveries_enqueue(alert=alert, event=DeliveryEvent.FIRED, now=moment)
    log = logger.critical if level == Severity.CRITICAL else logger.warning
    log("alert %s %s: %s", kind, subject, text)
    return alert


def alert_raise_alone(
    *, severity: Severity | None = None, kind: str, subject: str, message: str, now: datetime | None = None
) -> Alert:
    """
    alert_raise in a transaction of its own, for a failure whose own work was rolled back or never
    written (a node down, a refused signing): the alert must survive whatever the caller undoes.
    """
    with transaction.atomic(durable=True):
        return alert_raise(severity=severity, kind=kind, subject=subject, message=message, now=now)


@transaction.atomic(durable=True)
def alert_acknowledge(*, alert_id: int, user: AbstractBaseUser, remark: str, now: datetime | None = None) -> Alert:
    """
    Close an open alert in the name of user, saying why; the next occurrence opens a new alert.

    :raises WalletError: the remark is blank (remark_required), or the alert was acknowledged
        already (already_acknowledged).
    """
    remark = remark.strip()
    if not remark:
        raise WalletError("Say why the alert can be closed.", field="remark", code="remark_required")
    alert = Alert.objects.select_for_update().get(id=alert_id)
    if alert.acknowledged_at is not None:
        raise WalletError("The alert is already acknowledged.", code="already_acknowledged")
    alert.acknowledged_at = now or timezone.now()
    alert.acknowledged_by = user
    alert.acknowledge_remark = remark
    alert.open_key = None
    alert.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledge_remark", "open_key"])
    return alert


@transaction.atomic(savepoint=False)
def alert_resolve(*, kind: str, subject: str, how: str, now: datetime | None = None) -> list[Alert]:
    """
    Resolve the unresolved alerts of this kind and subject (open or acknowledged): their condition
    cleared. Queues a "resolved" delivery on the channels each one was routed to; returns them.
    """
    moment = now or timezone.now()
    resolved = []
    for alert in (
        Alert.objects.select_for_update().filter(kind=kind, subject=subject, resolved_at__isnull=True).order_by("id")
    ):
        if alert.acknowledged_at is not None and not kinds.kind_get(kind).resolves_itself:
            continue  # closed by a person already; nothing watches it any more
        alert.resolved_at = moment
        alert.resolved_how = redact(how)[:300]
        alert.open_key = None
        alert.save(update_fields=["resolved_at", "resolved_how", "open_key"])
        delivery.deliveries_enqueue(alert=alert, event=DeliveryEvent.RESOLVED, now=moment)
        logger.info("alert %s %s resolved: %s", kind, subject, alert.resolved_how)
        resolved.append(alert)
    return resolved


def alert_resolve_alone(*, kind: str, subject: str, how: str, now: datetime | None = None) -> list[Alert]:
    """alert_resolve in a transaction of its own (checks resolve each subject on its own)."""
    with transaction.atomic(durable=True):
        return alert_resolve(kind=kind, subject=subject, how=how, now=now)
