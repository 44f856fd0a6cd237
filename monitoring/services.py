"""Alert writes. Every app raises its alerts through alert_raise."""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from monitoring.models import Alert, Severity
from wallet_project.errors import WalletError
from wallet_project.logging import redact

logger = logging.getLogger(__name__)


def _open_key(kind: str, subject: str) -> str:
    return f"{kind}|{subject}"[:200]


@transaction.atomic(savepoint=False)
def alert_raise(*, severity: Severity, kind: str, subject: str, message: str, now: datetime | None = None) -> Alert:
    """
    Record an alert, or count one more occurrence of the same open alert (same kind and subject).

    Joins the caller's transaction: an alert about a change that rolls back rolls back with it.
    Callers reporting a failure that rolls their own work back raise the alert in a transaction
    of its own, after the rollback.
    """
    moment = now or timezone.now()
    text = redact(message)
    key = _open_key(kind, subject)
    updated = Alert.objects.filter(open_key=key).update(count=F("count") + 1, last_seen=moment, message=text)
    if updated:
        alert = Alert.objects.get(open_key=key)
        if severity > alert.severity:
            alert.severity = severity
            alert.save(update_fields=["severity"])
        return alert
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                severity=severity,
                kind=kind,
                subject=subject,
                message=text,
                first_seen=moment,
                last_seen=moment,
                open_key=key,
            )
    except IntegrityError:
        # Another process opened the same alert between our update and insert.
        Alert.objects.filter(open_key=key).update(count=F("count") + 1, last_seen=moment, message=text)
        return Alert.objects.get(open_key=key)
    log = logger.critical if severity == Severity.CRITICAL else logger.warning
    log("alert %s %s: %s", kind, subject, text)
    return alert


def alert_raise_alone(
    *, severity: Severity, kind: str, subject: str, message: str, now: datetime | None = None
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
