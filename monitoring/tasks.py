"""Beat entry points of monitoring: the check, alert deliveries, hot balance reads."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from monitoring import balances, checks, delivery, reconciliation

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def monitoring_check(**kwargs: object) -> int:
    """Raise the alerts whose condition holds, resolve the ones that cleared."""
    report = checks.monitoring_check(now=timezone.now())
    if report.errors:
        logger.error("monitoring checks failed: %s", ", ".join(report.errors))
    return report.raised


@shared_task(ignore_result=True)
def alerts_deliver(**kwargs: object) -> int:
    """Send the due alert deliveries (webhook, email); failures wait for their next try."""
    result = delivery.deliveries_run(now=timezone.now())
    if result.sent or result.retrying or result.failed:
        logger.info("alert deliveries: %s sent, %s to retry, %s given up", result.sent, result.retrying, result.failed)
    return result.sent


@shared_task(ignore_result=True)
def hot_balances_refresh(**kwargs: object) -> int:
    """Read the hot wallets' balances from their chains."""
    return balances.hot_balances_refresh(now=timezone.now()).read


@shared_task(ignore_result=True)
def reconcile(*, coin_id: str, **kwargs: object) -> int:
    """Reconcile one coin (ledger against itself and against the chain); returns the run's status."""
    return reconciliation.reconcile_coin(coin_id=coin_id, now=timezone.now()).status
