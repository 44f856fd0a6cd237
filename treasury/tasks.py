"""Beat entry points of the treasury: plan hot surplus transfers to cold, send the approved, confirm."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from treasury import sending, services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def treasury_run(*, chain_id: str, **kwargs: object) -> None:
    """Plan, send and confirm the chain's treasury transfers (each step safe to repeat)."""
    moment = timezone.now()
    plan = services.treasury_plan(chain_id=chain_id, now=moment)
    try:
        sent = sending.treasury_send(chain_id=chain_id, now=moment)
        done = sending.treasury_confirm(chain_id=chain_id, now=moment)
    except sending.NODE_ERRORS as exc:  # the node is down: the next run resumes from the stored jobs
        logger.warning("treasury run of %s stopped: %s", chain_id, type(exc).__name__)
        return
    logger.info(
        "treasury %s: %s proposed, %s approved at once, %s signed, %s sent, %s confirmed, %s failed",
        chain_id,
        plan.proposed,
        plan.approved,
        sent.signed,
        sent.broadcast + done.broadcast,
        done.confirmed,
        sent.failed + done.failed,
    )
