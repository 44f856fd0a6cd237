"""Set-up shared by the treasury tests: staff with the treasury permissions, thresholds through four eyes."""

from __future__ import annotations

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from addresses import selectors as addresses_selectors
from chains.base import ChainAdapter
from coins import selectors as coins_selectors
from controls import proposals as controls_proposals
from monitoring.models import HotBalance
from treasury import thresholds

PERMISSIONS = (
    ("treasury", "set_hot_threshold"),
    ("treasury", "approve_treasurytransfer"),
    ("treasury", "view_treasurytransfer"),
    ("controls", "decide_settingschange"),
)


def operator(name: str):
    """A staff member holding the treasury permissions (as the Operators group does)."""
    user = get_user_model().objects.create_user(name, password=f"{name}-password-1", is_staff=True)
    for app, codename in PERMISSIONS:
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
    return get_user_model().objects.get(pk=user.pk)  # permissions are cached per instance


def limits_set(*, address, coin_id: str, low: str | None, high: str | None, proposer, approver) -> None:
    """Set a hot address's limits the only way there is: one proposes, another approves."""
    change = thresholds.threshold_propose(
        address_id=address.id,
        coin_id=coin_id,
        min_balance=Decimal(low) if low is not None else None,
        max_balance=Decimal(high) if high is not None else None,
        user=proposer,
        reason="treasury policy",
    )
    controls_proposals.change_approve(change_id=change.id, user=approver, remark="checked")


def reading_store(*, adapter: ChainAdapter) -> None:
    """What the beat task hot_balances_refresh stores: every hot address's balance of each coin, read from the node."""
    for row in addresses_selectors.hot_addresses(chain_id=adapter.chain_id):
        for coin in coins_selectors.coin_list(enabled_only=False).filter(chain_id=adapter.chain_id):
            native = coins_selectors.coin_is_native(coin=coin)
            if not native and not coin.contract_address:
                continue
            units = adapter.balance(row.address, contract=None if native else coin.contract_address)
            HotBalance.objects.update_or_create(
                address=row.address,
                coin_id=coin.coin_id,
                defaults={
                    "chain_id": adapter.chain_id,
                    "balance": coins_selectors.amount_from_base_units(coin=coin, base_units=units),
                    "error": "",
                    "read_at": timezone.now(),
                },
            )
