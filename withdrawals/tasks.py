"""Beat entry points of on-chain withdrawals: pay the approved ones, then follow them to completion."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from withdrawals import payout as withdrawals_payout

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def withdrawals_pay(*, chain_id: str, **kwargs: object) -> int:
    """Sign and broadcast one chain's approved withdrawals."""
    result = withdrawals_payout.withdrawals_pay(chain_id=chain_id, now=timezone.now())
    logger.info(
        "withdrawals_pay %s: %s signed, %s broadcast%s",
        chain_id,
        result.signed,
        result.broadcast,
        f"; stopped: {result.error}" if result.error else "",
    )
    return result.signed


@shared_task(ignore_result=True)
def withdrawals_confirm(*, chain_id: str, **kwargs: object) -> int:
    """Complete or fail one chain's withdrawals in processing; replace the stuck ones."""
    result = withdrawals_payout.withdrawals_confirm(chain_id=chain_id, now=timezone.now())
    logger.info(
        "withdrawals_confirm %s: %s completed, %s failed, %s replaced, %s waiting%s",
        chain_id,
        result.completed,
        result.failed,
        result.replaced,
        result.waiting,
        f"; stopped: {result.error}" if result.error else "",
    )
    return result.completed
