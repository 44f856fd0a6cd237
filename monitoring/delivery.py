"""
Alert deliveries: a signed webhook and email, routed by severity, retried with backoff.

`deliveries_enqueue` writes one AlertDelivery row per routed channel in the transaction that
raises (or resolves) the alert. `deliveries_run` (a beat task) claims due rows under a lease,
sends them outside any transaction, and records each attempt: SENT, or PENDING again with the
next try after an exponential backoff, or FAILED after ALERT_DELIVERY_MAX_ATTEMPTS. A crash
while sending leaves the row PENDING and due when its lease ends: at-least-once, so receivers
deduplicate by the delivery id (X-Wallet-Delivery).

Webhook signature (Stripe's scheme): `X-Wallet-Signature: t=<unix seconds>,v1=<hex>` where hex is
HMAC-SHA256(secret, f"{t}.".encode() + body), one v1 per configured secret during a rotation.
The secrets never reach a log, a row or an exception.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from monitoring import kinds
from monitoring import services as monitoring_services
from monitoring.models import Alert, AlertDelivery, Channel, DeliveryEvent, DeliveryStatus, Severity
from wallet_project.logging import redact

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Wallet-Signature"
DELIVERY_HEADER = "X-Wallet-Delivery"
EVENT_HEADER = "X-Wallet-Event"
# A claimed delivery is due again after this long: a worker that died while sending is replaced.
CLAIM_LEASE_SECONDS = 120


def _severities(names: list[str]) -> set[int]:
    by_label = {label: value for value, label in Severity.choices}
    return {by_label[name.strip().lower()] for name in names if name.strip().lower() in by_label}


def channels_for(severity: int) -> list[Channel]:
    """Return the channels configured and routed for an alert of this severity."""
    channels = []
    if settings.ALERT_WEBHOOK_URL and severity in _severities(settings.ALERT_WEBHOOK_SEVERITIES):
        channels.append(Channel.WEBHOOK)
    if settings.ALERT_EMAIL_TO and severity in _severities(settings.ALERT_EMAIL_SEVERITIES):
        channels.append(Channel.EMAIL)
    return channels


@transaction.atomic(savepoint=False)
def deliveries_enqueue(*, alert: Alert, event: DeliveryEvent, now: datetime) -> list[AlertDelivery]:
    """
    Queue the messages about one event of an alert on each channel its severity routes to.

    A resolution goes only to the channels that were told the alert fired, so nobody hears of the
    end of something they never heard of. At most one row per (alert, event, channel).
    """
    channels = channels_for(alert.severity)
    if event == DeliveryEvent.RESOLVED:
        told = set(AlertDelivery.objects.filter(alert=alert).values_list("channel", flat=True))
        channels = [channel for channel in Channel if channel in told]
    rows = [
        AlertDelivery(alert=alert, event=event, channel=channel, next_attempt_at=now, created_at=now)
        for channel in channels
    ]
    AlertDelivery.objects.bulk_create(rows, ignore_conflicts=True)
    return rows


# --- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    ok: bool
    http_status: int | None = None
    error: str = ""


def signature_header(*, body: bytes, secrets: list[str], timestamp: int) -> str:
    """Return the X-Wallet-Signature value of body at timestamp, one v1 per secret."""
    signed = f"{timestamp}.".encode() + body
    parts = [f"t={timestamp}"]
    for secret in secrets:
        parts.append("v1=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest())
    return ",".join(parts)


def _admin_link(alert: Alert) -> str:
    base = settings.ALERT_ADMIN_BASE_URL.rstrip("/")
    return f"{base}/admin/monitoring/alert/{alert.id}/change/" if base else ""


def payload(*, delivery: AlertDelivery, alert: Alert) -> dict[str, object]:
    """Return the JSON document a webhook receives (and the facts an email says)."""
    return {
        "delivery_id": delivery.id,
        "event": f"alert.{delivery.event.lower()}",
        "alert": {
            "id": alert.id,
            "kind": alert.kind,
            "severity": alert.get_severity_display(),
            "subject": alert.subject,
            "message": alert.message,
            "count": alert.count,
            "first_seen": alert.first_seen.isoformat(),
            "last_seen": alert.last_seen.isoformat(),
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "resolved_how": alert.resolved_how,
            "what_to_do": kinds.what_to_do(alert.kind),
            "admin_url": _admin_link(alert),
        },
    }


def _send_webhook(*, delivery: AlertDelivery, alert: Alert) -> Outcome:
    body = json.dumps(payload(delivery=delivery, alert=alert), separators=(",", ":"), sort_keys=True).encode()
    secrets = [s for s in (item.strip() for item in settings.ALERT_WEBHOOK_SECRET.split(",")) if s]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "wallet-alerts/1",
        SIGNATURE_HEADER: signature_header(body=body, secrets=secrets, timestamp=int(time.time())),
        DELIVERY_HEADER: str(delivery.id),
        EVENT_HEADER: f"alert.{delivery.event.lower()}",
    }
    try:
        response = requests.post(
            settings.ALERT_WEBHOOK_URL,
            data=body,
            headers=headers,
            timeout=settings.ALERT_WEBHOOK_TIMEOUT_SECONDS,
            allow_redirects=False,
        )
    except requests.RequestException as exc:
        # The exception type only: its text carries the URL, which may hold a token.
        return Outcome(ok=False, error=f"webhook not reached: {type(exc).__name__}")
    if 200 <= response.status_code < 300:
        return Outcome(ok=True, http_status=response.status_code)
    return Outcome(ok=False, http_status=response.status_code, error=f"webhook answered HTTP {response.status_code}")


def _email_text(*, delivery: AlertDelivery, alert: Alert) -> tuple[str, str]:
    state = {"FIRED": "", "ESCALATED": " (severity raised)", "RESOLVED": " RESOLVED"}[delivery.event]
    subject = f"[{alert.get_severity_display().upper()}] {alert.kind} {alert.subject}{state}"
    lines = [
        f"{alert.kind} on {alert.subject}: {alert.message}",
        "",
        f"Severity: {alert.get_severity_display()}",
        f"First seen: {alert.first_seen.isoformat()}   last seen: {alert.last_seen.isoformat()}   "
        f"occurrences: {alert.count}",
    ]
    if alert.resolved_at is not None:
        lines.append(f"Resolved: {alert.resolved_at.isoformat()}: {alert.resolved_how}")
    lines += ["", "What to do:", kinds.what_to_do(alert.kind)]
    if link := _admin_link(alert):
        lines += ["", f"In the back-office: {link}"]
    lines += ["", f"(delivery {delivery.id})"]
    return subject[:200], "\n".join(lines)


def _send_email(*, delivery: AlertDelivery, alert: Alert) -> Outcome:
    subject, text = _email_text(delivery=delivery, alert=alert)
    message = EmailMessage(
        subject=subject,
        body=text,
        from_email=settings.ALERT_EMAIL_FROM,
        to=list(settings.ALERT_EMAIL_TO),
        headers={DELIVERY_HEADER: str(delivery.id)},
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    try:
        message.send(fail_silently=False)
    except (OSError, ValueError) as exc:  # smtplib's errors are OSErrors
        return Outcome(ok=False, error=f"mail not sent: {type(exc).__name__}")
    return Outcome(ok=True)


SENDERS = {Channel.WEBHOOK: _send_webhook, Channel.EMAIL: _send_email}


# --- the delivery run -----------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> int:
    """Return the wait after the attempts-th failed attempt: base * 2^(attempts-1), capped."""
    base = settings.ALERT_DELIVERY_BACKOFF_SECONDS
    return int(min(base * 2 ** max(attempts - 1, 0), settings.ALERT_DELIVERY_BACKOFF_MAX_SECONDS))


@transaction.atomic(durable=True)
def _claim(*, now: datetime, limit: int) -> list[int]:
    rows = list(
        AlertDelivery.objects.select_for_update(skip_locked=True)
        .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )
    AlertDelivery.objects.filter(id__in=rows).update(
        attempts=F("attempts") + 1,
        last_attempt_at=now,
        next_attempt_at=now + timedelta(seconds=CLAIM_LEASE_SECONDS),
    )
    return rows


@transaction.atomic(durable=True)
def _record(*, delivery_id: int, outcome: Outcome, now: datetime) -> AlertDelivery:
    row = AlertDelivery.objects.select_for_update().get(id=delivery_id)
    row.http_status = outcome.http_status
    if outcome.ok:
        row.status, row.sent_at, row.last_error = DeliveryStatus.SENT, now, ""
    else:
        row.last_error = redact(outcome.error)[:300]
        if row.attempts >= settings.ALERT_DELIVERY_MAX_ATTEMPTS:
            row.status = DeliveryStatus.FAILED
        else:
            row.next_attempt_at = now + timedelta(seconds=backoff_seconds(row.attempts))
    row.save(update_fields=["status", "sent_at", "last_error", "http_status", "next_attempt_at"])
    return row


@dataclass(frozen=True)
class RunResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def deliveries_run(*, now: datetime | None = None, limit: int = 100) -> RunResult:
    """
    Send the due deliveries (at most limit), each attempt recorded on its row.

    A delivery given up on raises ALERT_DELIVERY_FAILED for its channel, so the other channel
    (if routed) tells someone that alerts are being lost.
    """
    moment = now or timezone.now()
    sent = retrying = failed = 0
    for delivery_id in _claim(now=moment, limit=limit):
        row = AlertDelivery.objects.select_related("alert").get(id=delivery_id)
        try:
            outcome = SENDERS[Channel(row.channel)](delivery=row, alert=row.alert)
        except Exception as exc:  # a sender's bug must not stop the other deliveries
            logger.exception("alert delivery %s: the sender failed", delivery_id)
            outcome = Outcome(ok=False, error=f"sender failed: {type(exc).__name__}")
        row = _record(delivery_id=delivery_id, outcome=outcome, now=timezone.now() if now is None else moment)
        if row.status == DeliveryStatus.SENT:
            sent += 1
            continue
        if row.status == DeliveryStatus.PENDING:
            retrying += 1
            logger.warning("alert delivery %s (%s) failed, retrying: %s", row.id, row.channel, row.last_error)
            continue
        failed += 1
        logger.error("alert delivery %s (%s) given up after %s attempts", row.id, row.channel, row.attempts)
        # Raised again while open, it only counts: a failing channel cannot make a message loop.
        monitoring_services.alert_raise_alone(
            kind="ALERT_DELIVERY_FAILED",
            subject=f"channel {row.channel.lower()}",
            message=f"delivery {row.id} of alert {row.alert_id} ({row.alert.kind}) given up after "
            f"{row.attempts} attempts: {row.last_error}",
            now=moment,
        )
    return RunResult(sent=sent, retrying=retrying, failed=failed)


def channel_sent_since(*, channel: str, since: datetime) -> bool:
    """Return whether a delivery on channel succeeded after since (the channel works again)."""
    return AlertDelivery.objects.filter(channel=channel, status=DeliveryStatus.SENT, sent_at__gt=since).exists()
