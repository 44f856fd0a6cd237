from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import Sum

from assets.models import Balance, BusinessType, Flow
from recharges import services as recharges_services


def tick(adapter, now: datetime, *, chain_id: str | None = None) -> None:
    """One beat tick of a chain: scan until caught up (or an error), then confirm."""
    chain_id = chain_id or adapter.chain_id
    for _ in range(50):
        result = recharges_services.deposits_scan_batch(chain_id=chain_id, now=now, adapter=adapter)
        if result.error is not None or (result.caught_up and result.fork_point is None):
            break
    recharges_services.deposits_confirm(chain_id=chain_id, now=now, adapter=adapter)


def available(user, coin_id: str) -> Decimal:
    balance = Balance.objects.filter(user=user, coin_id=coin_id).first()
    return balance.available if balance else Decimal(0)


def net_recharged(user, coin_id: str) -> Decimal:
    """Deposits credited minus deposits reversed, from the flow journal."""
    flows = Flow.objects.filter(
        user=user, coin_id=coin_id, business_type__in=[BusinessType.RECHARGE, BusinessType.REORG_REVERSAL]
    )
    return flows.aggregate(total=Sum("amount"))["total"] or Decimal(0)
