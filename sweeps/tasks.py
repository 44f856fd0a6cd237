"""Beat entry point of sweeps: one chain's run."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from sweeps import services as sweeps_services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def sweeps_run(*, chain_id: str, **kwargs: object) -> int:
    """Plan and move on one chain's sweeps."""
    run = sweeps_services.sweeps_run(chain_id=chain_id, now=timezone.now())
    logger.info(
        "sweeps_run %s: %s planned, %s top-ups, %s signed, %s broadcast, %s confirmed, %s failed, %s skipped, "
        "%s waiting",
        chain_id,
        run.planned,
        run.topups,
        run.signed,
        run.broadcast,
        run.confirmed,
        run.failed,
        run.skipped,
        run.waiting,
    )
    return run.confirmed
