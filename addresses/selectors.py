"""Reads of wallet_address that other apps need, and the address validation they call."""

from __future__ import annotations

from datetime import datetime

from django.db.models import Q, QuerySet

from addresses.models import AddressStatus, AddressType, WalletAddress
from addresses.validation import InvalidAddress, address_validate

__all__ = [
    "InvalidAddress",
    "address_find",
    "address_pool_available",
    "address_validate",
    "deposit_addresses_assigned",
    "hot_addresses",
]


def deposit_addresses_assigned(
    *, chain_id: str, since: datetime | None = None, after_id: int | None = None
) -> QuerySet[WalletAddress]:
    """
    Return the chain's deposit addresses that belong to a user (the scanner's watch list).

    With `since` and/or `after_id`, only what changed: rows assigned at or after `since` OR with
    an id above `after_id` (a pool row keeps its old id when a user gets it, so both are needed).
    """
    rows = WalletAddress.objects.filter(chain_id=chain_id, address_type=AddressType.USER_DEPOSIT, user__isnull=False)
    changed = Q()
    if since is not None:
        changed |= Q(assign_time__gte=since)
    if after_id is not None:
        changed |= Q(id__gt=after_id)
    return rows.filter(changed).order_by("id")


def address_pool_available(*, chain_id: str) -> int:
    """Return how many unassigned deposit addresses the chain's pool holds."""
    return WalletAddress.objects.filter(
        chain_id=chain_id, address_type=AddressType.USER_DEPOSIT, user__isnull=True, status=AddressStatus.NORMAL
    ).count()


def address_find(*, chain_id: str, address: str) -> WalletAddress | None:
    """
    Return our address row for an address of chain_id (any type), or None.

    Exact match after canonicalisation (EIP-55 for ETH, lower-case bech32): the column's
    collation may ignore case, base58 must not. Withdrawals use it to settle transfers to
    another user's deposit address internally.
    """
    canonical = address_validate(chain_id, address)
    for row in WalletAddress.objects.filter(chain_id=chain_id, address=canonical).select_related("user"):
        if row.address == canonical:
            return row
    return None


def hot_addresses(*, chain_id: str, wallet_type: str | None = None) -> QuerySet[WalletAddress]:
    """Return the chain's enabled hot addresses (of one business pool if wallet_type is given)."""
    rows = WalletAddress.objects.filter(chain_id=chain_id, address_type=AddressType.HOT, status=AddressStatus.NORMAL)
    if wallet_type is not None:
        rows = rows.filter(wallet_type=wallet_type)
    return rows.order_by("id")
