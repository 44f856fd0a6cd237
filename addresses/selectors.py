"""Reads of wallet_address that other apps need, and the address validation they call."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import Q, QuerySet

from addresses import hd
from addresses.models import AddressStatus, AddressType, UserRegion, WalletAddress
from addresses.validation import InvalidAddress, address_validate
from chains.codecs import segwit_encode
from wallet_project import db

__all__ = [
    "InvalidAddress",
    "address_find",
    "address_of_btc_script",
    "address_pool_available",
    "address_validate",
    "addresses_by_address",
    "cold_address_for",
    "deposit_addresses_assigned",
    "exchange_addresses_owned",
    "hot_addresses",
    "public_keys",
    "user_region",
    "watched_addresses",
]

# The exchange's own addresses that are no user's: they hold the exchange's money on a UTXO chain.
OWN_TYPES = (AddressType.HOT, AddressType.CHANGE, AddressType.COLD)


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


def address_of_btc_script(*, script_hex: str) -> WalletAddress | None:
    """
    Return our BTC address row whose P2WPKH output script is script_hex, or None (another kind of
    script, or not ours). A payout finds its change output in its own transaction with it.
    """
    if len(script_hex) != 44 or not script_hex.startswith("0014"):
        return None
    address = segwit_encode(hd.btc_hrp(), 0, bytes.fromhex(script_hex[4:]))
    return WalletAddress.objects.filter(chain_id="BTC", address=address).order_by("id").first()


def hot_addresses(*, chain_id: str, wallet_type: str | None = None) -> QuerySet[WalletAddress]:
    """Return the chain's enabled hot addresses (of one business pool if wallet_type is given)."""
    rows = WalletAddress.objects.filter(chain_id=chain_id, address_type=AddressType.HOT, status=AddressStatus.NORMAL)
    if wallet_type is not None:
        rows = rows.filter(wallet_type=wallet_type)
    return rows.order_by("id")


def cold_address_for(*, chain_id: str, wallet_type: str) -> WalletAddress | None:
    """
    Return the enabled cold address a hot address of (chain_id, wallet_type) sends its surplus to:
    the oldest of the same business pool, else the chain's oldest; None when the chain has none.
    """
    cold = WalletAddress.objects.filter(chain_id=chain_id, address_type=AddressType.COLD, status=AddressStatus.NORMAL)
    return cold.filter(wallet_type=wallet_type).order_by("id").first() or cold.order_by("id").first()


def user_region(*, user_id: int) -> str:
    """Return the region the user is served from, or "" when none is known."""
    return UserRegion.objects.filter(user_id=user_id).values_list("region", flat=True).first() or ""


def exchange_addresses_owned(
    *, chain_id: str, since: datetime | None = None, after_id: int | None = None
) -> QuerySet[WalletAddress]:
    """
    Return the chain's hot, change and cold addresses (all of them, or only those created at or
    after `since` OR with an id above `after_id`): what the UTXO scanner watches besides deposits.
    """
    rows = WalletAddress.objects.filter(chain_id=chain_id, address_type__in=OWN_TYPES)
    changed = Q()
    if since is not None:
        changed |= Q(create_time__gte=since)
    if after_id is not None:
        changed |= Q(id__gt=after_id)
    return rows.filter(changed).order_by("id")


def watched_addresses(
    *, chain_id: str, since: datetime | None = None, after_id: int | None = None
) -> QuerySet[WalletAddress]:
    """
    Return, in one query, what the scanner watches on the chain: the deposit addresses that belong
    to a user (changed: assigned at or after `since`, or an id above `after_id`) and the exchange's
    own hot, change and cold addresses (changed: created at or after `since`, or an id above
    `after_id`). Without `since` and `after_id`, all of them.
    """
    deposit = Q(address_type=AddressType.USER_DEPOSIT, user__isnull=False)
    own = Q(address_type__in=OWN_TYPES)
    if since is not None or after_id is not None:
        deposit_changed, own_changed = Q(), Q()
        if since is not None:
            deposit_changed |= Q(assign_time__gte=since)
            own_changed |= Q(create_time__gte=since)
        if after_id is not None:
            deposit_changed |= Q(id__gt=after_id)
            own_changed |= Q(id__gt=after_id)
        deposit &= deposit_changed
        own &= own_changed
    return WalletAddress.objects.filter(Q(chain_id=chain_id) & (deposit | own)).order_by("id")


def addresses_by_address(*, chain_id: str, addresses: Collection[str]) -> dict[str, WalletAddress]:
    """
    Return {address: row} for those of the given stored address strings that are ours on chain_id.

    The strings are compared exactly (the column's collation may ignore case; base58 must not).
    """
    wanted = set(addresses)
    found: dict[str, WalletAddress] = {}
    wanted_list = sorted(wanted)
    for start in range(0, len(wanted_list), 500):
        for row in WalletAddress.objects.filter(chain_id=chain_id, address__in=wanted_list[start : start + 500]):
            if row.address in wanted:
                found[row.address] = row
    return found


def public_keys(*, address_ids: Collection[int]) -> dict[int, tuple[str, str]]:
    """
    Return {address id: (address, compressed public key hex)} of our addresses: what a BTC input
    needs to be signed (bitcoinlib puts the key in the witness; the signer checks it is its own).

    Derived from the HD seed's account xpub at the row's index (no secret is opened), or read from
    the row (an imported key). Rows with neither (cold, watch-only) are left out.
    """
    keys: dict[int, tuple[str, str]] = {}
    rows = WalletAddress.objects.filter(id__in=list(address_ids)).select_related("key_secret")
    accounts: dict[int, hd.ExtendedKey] = {}
    for row in rows:
        if row.public_key:
            keys[row.id] = (row.address, row.public_key)
            continue
        secret = row.key_secret
        if secret is None or not secret.account_xpub or row.derivation_index is None:
            continue
        if secret.id not in accounts:
            accounts[secret.id] = hd.ExtendedKey.from_xpub(secret.account_xpub).child(0)
        public = accounts[secret.id].child(row.derivation_index).public_key
        # A row whose index or address was tampered with must not hand out another key.
        if hd.address_from_public_key(row.chain_id, public) == row.address:
            keys[row.id] = (row.address, public.hex())
    return keys


def deposit_address_ids(*, chain_id: str) -> dict[str, int]:
    """Return {address: id} of the chain's deposit addresses that belong to a user (the sweep planner's map)."""
    return dict(
        db.values_rows(
            WalletAddress.objects.filter(
                chain_id=chain_id, address_type=AddressType.USER_DEPOSIT, user__isnull=False
            ).values_list("address", "id")
        )
    )
