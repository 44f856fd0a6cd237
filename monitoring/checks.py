"""
The monitoring check: conditions that need polling raise their alerts while they hold and
resolve them when they clear; alerts raised where things happen (a node error, a stuck payout)
are resolved here when a later fact proves the condition gone.

Runs from beat (monitoring.tasks.monitoring_check, every MONITORING_CHECK_SECONDS) or by hand
(`manage.py monitoring_check`). Each check reads, then raises or resolves each subject in a short
transaction of its own: one failing check does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from addresses import selectors as addresses_selectors
from assets.relay import selectors as relay_selectors
from monitoring import delivery, kinds
from monitoring import selectors as monitoring_selectors
from monitoring import services as monitoring_services
from monitoring.models import BackupKind, ChainTip, ReconciliationStatus, Severity
from recharges import selectors as recharges_selectors
from treasury import selectors as treasury_selectors
from withdrawals import selectors as withdrawals_selectors
from withdrawals.models import WithdrawStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    subject: str
    message: str
    severity: Severity | None = None  # None: the kind's default


@dataclass
class Polled:
    """What a polling check saw: the subjects in trouble now; the others of its kind are cleared."""

    kind: str
    firing: list[Finding] = field(default_factory=list)
    # Subjects whose state could not be read this time: neither raised nor resolved.
    unknown: set[str] = field(default_factory=set)
    how: str = "the condition cleared"


@dataclass
class Cleared:
    """Alerts raised elsewhere whose condition a later fact proves gone: {subject: how}."""

    kind: str
    subjects: dict[str, str] = field(default_factory=dict)


@dataclass
class CheckReport:
    raised: int = 0
    resolved: int = 0
    errors: list[str] = field(default_factory=list)


def _chain_setting(values: dict[str, int], chain_id: str) -> int | None:
    return values.get(chain_id, values.get("*"))


# --- chains and the scanner ----------------------------------------------------------------------


@transaction.atomic(durable=True)
def _tip_track(*, chain_id: str, tip_height: int, now: datetime) -> ChainTip:
    tip, created = ChainTip.objects.select_for_update().get_or_create(
        chain_id=chain_id, defaults={"tip_height": tip_height, "changed_at": now, "checked_at": now}
    )
    if not created:
        if tip.tip_height != tip_height:
            tip.tip_height, tip.changed_at = tip_height, now
        tip.checked_at = now
        tip.save(update_fields=["tip_height", "changed_at", "checked_at"])
    return tip


def check_node_stale(*, now: datetime) -> Polled:
    result = Polled(kind="NODE_STALE", how="the tip moved")
    for cursor in recharges_selectors.scan_cursor_list():
        if cursor.tip_height < 0:
            continue
        tip = _tip_track(chain_id=cursor.chain_id, tip_height=cursor.tip_height, now=now)
        limit = _chain_setting(settings.NODE_STALE_SECONDS, cursor.chain_id)
        still = (now - tip.changed_at).total_seconds()
        if limit and still > limit:
            read = cursor.tip_time.isoformat() if cursor.tip_time else "never"
            result.firing.append(
                Finding(
                    subject=f"chain {cursor.chain_id}",
                    message=f"tip {tip.tip_height} has not moved for {still:.0f}s (limit {limit}s); "
                    f"the scanner last read the tip at {read}",
                )
            )
    return result


def check_scanner_lag() -> Polled:
    result = Polled(kind="SCANNER_LAG", how="the scanner caught up")
    for cursor in recharges_selectors.scan_cursor_list():
        if cursor.tip_height < 0:
            continue
        lag = cursor.tip_height - cursor.height
        limit = _chain_setting(settings.SCANNER_LAG_ALERT_BLOCKS, cursor.chain_id)
        if limit and lag > limit:
            result.firing.append(
                Finding(
                    subject=f"chain {cursor.chain_id}",
                    message=f"the scanner is at block {cursor.height}, {lag} behind the tip {cursor.tip_height} "
                    f"(limit {limit})",
                )
            )
    return result


def cleared_node_down() -> Cleared:
    """A NODE_DOWN alert clears when the scanner read the chain's tip after the alert's last failure."""
    result = Cleared(kind="NODE_DOWN")
    cursors = {cursor.chain_id: cursor for cursor in recharges_selectors.scan_cursor_list()}
    for alert in monitoring_selectors.alert_list_unresolved(kind="NODE_DOWN"):
        cursor = cursors.get(alert.subject.removeprefix("chain "))
        if cursor is not None and cursor.tip_time is not None and cursor.tip_time > alert.last_seen:
            result.subjects[alert.subject] = (
                f"the node answered at {cursor.tip_time.isoformat()} (tip {cursor.tip_height})"
            )
    return result


# --- hot wallets -----------------------------------------------------------------------------------


def check_hot_balances(*, now: datetime) -> tuple[Polled, Polled]:
    """A hot address's balance of a coin against its thresholds (treasury_hot_threshold)."""
    low = Polled(kind="HOT_BALANCE_LOW", how="the balance is back at or above the minimum")
    high = Polled(kind="HOT_BALANCE_HIGH", how="the balance is back at or below the maximum")
    chains = dict.fromkeys([*settings.HOT_BALANCE_CHAINS, *settings.TREASURY_CHAINS])
    for chain_id in chains:
        for position in treasury_selectors.hot_positions(chain_id=chain_id, now=now):
            subject, balance = position.subject, position.balance
            if balance is None:
                low.unknown.add(subject)
                high.unknown.add(subject)
                continue
            if position.min_balance is not None and balance < position.min_balance:
                low.firing.append(
                    Finding(
                        subject=subject,
                        message=f"holds {balance.normalize():f} {position.coin_id}, below its minimum "
                        f"{position.min_balance.normalize():f}: top it up from cold",
                    )
                )
            if position.max_balance is not None and balance > position.max_balance:
                high.firing.append(
                    Finding(
                        subject=subject,
                        message=f"holds {balance.normalize():f} {position.coin_id}, above its maximum "
                        f"{position.max_balance.normalize():f}: the surplus goes to cold by a treasury transfer "
                        "(approve it in the admin under Treasury transfers)",
                    )
                )
    return low, high


def cleared_treasury() -> list[Cleared]:
    """Treasury alerts whose transfer moved on (decided, signed, ended), or whose chain has a cold address now."""
    proposed = Cleared(kind="TREASURY_TRANSFER_PROPOSED")
    waits = Cleared(kind="TREASURY_TRANSFER_WAITS")
    for kind, result, still in (
        ("TREASURY_TRANSFER_PROPOSED", proposed, ("PROPOSED",)),
        ("TREASURY_TRANSFER_WAITS", waits, ("APPROVED", "SIGNED")),
    ):
        for alert in monitoring_selectors.alert_list_unresolved(kind=kind):
            status = treasury_selectors.transfer_status(transfer_no=alert.subject.removeprefix("transfer "))
            if status not in still:
                result.subjects[alert.subject] = f"the transfer is {status or 'gone'}"
    no_cold = Cleared(kind="TREASURY_NO_COLD_ADDRESS")
    for alert in monitoring_selectors.alert_list_unresolved(kind="TREASURY_NO_COLD_ADDRESS"):
        chain_id = alert.subject.removeprefix("chain ")
        if addresses_selectors.cold_address_for(chain_id=chain_id, wallet_type="") is not None:
            no_cold.subjects[alert.subject] = "a cold address exists"
    return [proposed, waits, no_cold]


# --- withdrawals ---------------------------------------------------------------------------------


def check_review_overdue(*, now: datetime) -> Polled:
    result = Polled(kind="WITHDRAW_REVIEW_OVERDUE", how="no withdrawal waits for review that long any more")
    limit = settings.WITHDRAW_REVIEW_ALERT_SECONDS
    queue = withdrawals_selectors.review_queue(waiting_since=now - timedelta(seconds=limit))
    if queue.size:
        waited = (now - queue.oldest_applied_at).total_seconds() if queue.oldest_applied_at else 0
        result.firing.append(
            Finding(
                subject="review queue",
                message=f"{queue.size} withdrawal(s) wait for review longer than {limit}s, the oldest "
                f"{waited:.0f}s: {', '.join(queue.oldest_numbers)}",
            )
        )
    return result


def cleared_withdraw_stuck() -> Cleared:
    """A stuck withdrawal's alert clears when it is no longer processing (completed or failed)."""
    result = Cleared(kind="WITHDRAW_STUCK")
    alerts = monitoring_selectors.alert_list_unresolved(kind="WITHDRAW_STUCK")
    numbers = {alert.subject.removeprefix("withdrawal "): alert.subject for alert in alerts}
    for number, status in withdrawals_selectors.withdrawal_statuses(withdraw_nos=numbers).items():
        if status != WithdrawStatus.PROCESSING:
            result.subjects[numbers[number]] = f"the withdrawal is {WithdrawStatus(status).label}"
    return result


def cleared_reconciliation() -> Cleared:
    """A coin's reconciliation alert clears when its latest run that read the chain balanced."""
    result = Cleared(kind="RECONCILIATION_MISMATCH")
    for alert in monitoring_selectors.alert_list_unresolved(kind="RECONCILIATION_MISMATCH"):
        latest = monitoring_selectors.reconciliation_latest(coin_id=alert.subject.removeprefix("coin "))
        if latest is not None and latest.status == ReconciliationStatus.BALANCED:
            result.subjects[alert.subject] = f"reconciliation run {latest.id} balanced"
    return result


# --- events, backups, deliveries, quiet events -----------------------------------------------------------


def check_relay_lag(*, now: datetime) -> Polled:
    result = Polled(kind="EVENT_RELAY_LAG", how="the oldest pending event is recent again")
    threshold = float(settings.RELAY_LAG_ALERT_SECONDS)
    lag = relay_selectors.outbox_lag_seconds(now=now)
    if lag > threshold:
        # The same subject and severities as the relay's own lag check, so both feed one alert.
        result.firing.append(
            Finding(
                subject="event_outbox",
                message=f"the oldest pending event is {lag:.0f}s old (threshold {threshold:.0f}s)",
                severity=Severity.CRITICAL if lag > threshold * 10 else Severity.WARNING,
            )
        )
    return result


def check_backup_overdue(*, now: datetime) -> Polled:
    result = Polled(kind="BACKUP_OVERDUE", how="a database backup finished")
    hours = settings.BACKUP_MAX_AGE_HOURS
    if hours <= 0:
        return result
    last = monitoring_selectors.backup_last_finished().get(BackupKind.DATABASE)
    if last is None and not settings.PRODUCTION:
        return result  # a development machine that never made a backup is not an incident
    if last is None or now - last > timedelta(hours=hours):
        when = last.isoformat() if last else "never"
        result.firing.append(
            Finding(subject="database backups", message=f"the last database backup finished {when} (limit {hours} h)")
        )
    return result


def cleared_backup_failed() -> Cleared:
    result = Cleared(kind="BACKUP_FAILED")
    subjects = {"database backup": BackupKind.DATABASE, "vault export": BackupKind.VAULT}
    for alert in monitoring_selectors.alert_list_unresolved(kind="BACKUP_FAILED"):
        kind = subjects.get(alert.subject)
        if kind is not None and monitoring_selectors.backup_finished_since(kind=kind, since=alert.last_seen):
            result.subjects[alert.subject] = "a later backup of that kind finished"
    return result


def cleared_delivery_failed() -> Cleared:
    result = Cleared(kind="ALERT_DELIVERY_FAILED")
    for alert in monitoring_selectors.alert_list_unresolved(kind="ALERT_DELIVERY_FAILED"):
        channel = alert.subject.removeprefix("channel ").upper()
        if delivery.channel_sent_since(channel=channel, since=alert.last_seen):
            result.subjects[alert.subject] = "a later delivery on that channel succeeded"
    return result


def cleared_quiet(*, now: datetime) -> list[Cleared]:
    """Event alerts with nothing to poll resolve after their kind's quiet time without a repeat."""
    results = []
    for code, kind in kinds.KINDS.items():
        if not kind.quiet_resolve_seconds:
            continue
        result = Cleared(kind=code)
        quiet_since = now - timedelta(seconds=kind.quiet_resolve_seconds)
        for alert in monitoring_selectors.alert_list_unresolved(kind=code):
            if alert.acknowledged_at is None and alert.last_seen < quiet_since:
                result.subjects[alert.subject] = f"no new occurrence for {kind.quiet_resolve_seconds}s"
        results.append(result)
    return results


# --- running them --------------------------------------------------------------------------------


def _apply_polled(result: Polled, *, now: datetime, report: CheckReport) -> None:
    firing = {finding.subject for finding in result.firing}
    for finding in result.firing:
        monitoring_services.alert_raise_alone(
            severity=finding.severity, kind=result.kind, subject=finding.subject, message=finding.message, now=now
        )
        report.raised += 1
    for alert in monitoring_selectors.alert_list_unresolved(kind=result.kind):
        if alert.subject in firing or alert.subject in result.unknown:
            continue
        report.resolved += len(
            monitoring_services.alert_resolve_alone(kind=result.kind, subject=alert.subject, how=result.how, now=now)
        )


def _apply_cleared(result: Cleared, *, now: datetime, report: CheckReport) -> None:
    for subject, how in result.subjects.items():
        report.resolved += len(
            monitoring_services.alert_resolve_alone(kind=result.kind, subject=subject, how=how, now=now)
        )


def monitoring_check(*, now: datetime | None = None) -> CheckReport:
    """Run every check once: raise what holds, resolve what cleared; report counts and failed checks."""
    moment = now or timezone.now()
    report = CheckReport()
    checks: list[tuple[str, Callable[[], object]]] = [
        ("node_stale", lambda: check_node_stale(now=moment)),
        ("scanner_lag", check_scanner_lag),
        ("node_down", cleared_node_down),
        ("hot_balances", lambda: check_hot_balances(now=moment)),
        ("treasury", cleared_treasury),
        ("review_overdue", lambda: check_review_overdue(now=moment)),
        ("withdraw_stuck", cleared_withdraw_stuck),
        ("reconciliation", cleared_reconciliation),
        ("relay_lag", lambda: check_relay_lag(now=moment)),
        ("backup_overdue", lambda: check_backup_overdue(now=moment)),
        ("backup_failed", cleared_backup_failed),
        ("delivery_failed", cleared_delivery_failed),
        ("quiet", lambda: cleared_quiet(now=moment)),
    ]
    for name, check in checks:
        try:
            outcome = check()
            for result in outcome if isinstance(outcome, (list, tuple)) else [outcome]:
                if isinstance(result, Polled):
                    _apply_polled(result, now=moment, report=report)
                else:
                    _apply_cleared(result, now=moment, report=report)
        except Exception:  # one broken check must not blind the others
            logger.exception("monitoring check %s failed", name)
            report.errors.append(name)
    return report
