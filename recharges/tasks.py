"""Beat entry points of the deposit scanner: one scan task and one confirmation task per chain."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from recharges import services as recharges_services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def deposits_scan(*, chain_id: str, **kwargs: object) -> None:
    """Advance one chain's scan cursor, batch after batch, until caught up or out of time."""
    deadline = time.monotonic() + settings.SCAN_TICK_BUDGET_SECONDS
    while True:
        try:
            result = recharges_services.deposits_scan_batch(chain_id=chain_id, now=timezone.now())
        except recharges_services.CursorMoved:
            # Another worker advanced the cursor first; its batch already covers ours.
            logger.info("deposits_scan of %s stopped: cursor moved by another scanner", chain_id)
            return
        if result.error is not None or (result.caught_up and result.fork_point is None):
            return
        if time.monotonic() > deadline:
            return


@shared_task(ignore_result=True)
def deposits_confirm(*, chain_id: str, **kwargs: object) -> None:
    """Credit one chain's deposits that reached their confirmations."""
    recharges_services.deposits_confirm(chain_id=chain_id, now=timezone.now())
