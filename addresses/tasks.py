import logging

from celery import shared_task
from django.conf import settings

from addresses import hd
from addresses import services as addresses_services

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def address_pool_top_up(*, chain_id: str | None = None, **kwargs: object) -> None:
    """Beat entry point: top each chain's deposit address pool up when it runs low."""
    for chain in [chain_id] if chain_id else hd.CHAINS:
        try:
            added = addresses_services.address_pool_top_up(
                chain_id=chain, minimum=settings.ADDRESS_POOL_MIN, batch=settings.ADDRESS_POOL_BATCH
            )
        except addresses_services.NoHdWallet:
            # A chain without a deposit seed is not set up yet; the allocation API says so.
            logger.info("address pool of %s not topped up: no deposit seed", chain)
            continue
        if added:
            logger.info("address pool of %s topped up by %s", chain, added)
