"""Celery entry points of the assets app: the event relay's bounded pass, lag check and pruning."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from assets import consumers
from assets.relay import runner
from assets.relay import services as relay_services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def events_relay(*, max_seconds: float = 50.0, **kwargs: object) -> int:
    """Beat entry point: relay pending events for at most max_seconds (alongside or instead of relay_events)."""
    result = runner.Relay(config=runner.relay_config_from_settings()).run_pass(max_seconds=max_seconds)
    logger.info("events_relay published %s events in %s batches", result.published, result.batches)
    return result.published


@shared_task(ignore_result=True)
def events_lag_check(**kwargs: object) -> float:
    """Beat entry point: alert when the oldest pending event is older than RELAY_LAG_ALERT_SECONDS."""
    return runner.relay_lag_check(threshold_seconds=float(settings.RELAY_LAG_ALERT_SECONDS))


@shared_task(ignore_result=True)
def events_prune(**kwargs: object) -> int:
    """Beat entry point: delete sent events older than EVENT_RETENTION_DAYS and expired consumer dedupe records."""
    now = timezone.now()
    pruned = relay_services.outbox_prune(now=now, retention_days=settings.EVENT_RETENTION_DAYS)
    return pruned + consumers.consumed_prune(now=now)
