"""Reads of wallet_address that other apps need."""

from __future__ import annotations

from django.db.models import QuerySet

from addresses.models import AddressType, WalletAddress


def deposit_addresses_assigned(*, chain_id: str) -> QuerySet[WalletAddress]:
    """Return the chain's deposit addresses that belong to a user (the scanner's watch list)."""
    return WalletAddress.objects.filter(
        chain_id=chain_id, address_type=AddressType.USER_DEPOSIT, user__isnull=False
    ).order_by("id")
