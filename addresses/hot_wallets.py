"""
The exchange's own wallets in the addresses app: which hot address pays (seed 3.1.2), the regions
hot addresses and users are tagged with, and watch-only cold addresses.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from decimal import Decimal

from django.db import transaction
from django.db.models import QuerySet

from addresses.models import (
    AddressStatus,
    AddressType,
    ColdAddressRegistration,
    HotWalletCursor,
    UserRegion,
    WalletAddress,
)
from addresses.validation import address_validate
from coins import selectors as coins_selectors
from wallet_project.errors import Conflict, NotFound, WalletError

logger = logging.getLogger(__name__)


class NoHotWallet(WalletError):
    code = "no_hot_wallet"


class UnknownStrategy(WalletError):
    code = "unknown_strategy"


class ColdAddressTaken(Conflict):
    code = "cold_address_taken"


@transaction.atomic(durable=True)
def cold_address_add(
    *, chain_id: str, address: str, wallet_type: str = "default", operator_id: int | None = None, remark: str = ""
) -> WalletAddress:
    """
    Register a cold wallet address, watch-only: no key is stored and the signer refuses it.

    The address is validated for the chain and network (checksums) and stored in its canonical
    form; who registered it, when and why is kept (wallet_cold_address_registration).
    :raises InvalidAddress: malformed or another network's address.
    :raises ColdAddressTaken: the address is one of ours already (a deposit, hot or cold address).
    """
    canonical = address_validate(chain_id, address)
    coin = coins_selectors.chain_native_coin(chain_id=chain_id)
    if WalletAddress.objects.filter(address=canonical).exists():
        raise ColdAddressTaken(f"{canonical} is one of the wallet's addresses already.", field="address")
    row = WalletAddress.objects.create(
        coin=coin,
        coin_name=coin.coin_name,
        chain_id=chain_id,
        address_type=AddressType.COLD,
        address=canonical,
        wallet_type=wallet_type,
    )
    ColdAddressRegistration.objects.create(
        address=row, operator_id=operator_id, remark=(remark or "").strip()[:500] or "registered"
    )
    logger.info("cold address %s of %s registered by user %s", row.address, chain_id, operator_id)
    return row


@transaction.atomic(durable=True)
def user_region_set(*, user_id: int, region: str) -> None:
    """Record the region a user is served from ("" forgets it): their withdrawals prefer its hot addresses."""
    region = region.strip()
    if not region:
        UserRegion.objects.filter(user_id=user_id).delete()
        return
    UserRegion.objects.update_or_create(user_id=user_id, defaults={"region": region[:32]})


@transaction.atomic(durable=True)
def hot_address_region_set(*, address_id: int, region: str) -> WalletAddress:
    """Tag a hot address with the region it serves ("" serves everyone).

    :raises NotFound: no such hot address.
    """
    row = WalletAddress.objects.select_for_update().filter(id=address_id, address_type=AddressType.HOT).first()
    if row is None:
        raise NotFound(f"No hot address {address_id}.")
    row.region = region.strip()[:32]
    row.save(update_fields=["region", "update_time"])
    return row


class HotWalletStrategy:
    ROUND_ROBIN = "round_robin"
    BALANCE = "balance"
    REGION = "region"
    ALL = (ROUND_ROBIN, BALANCE, REGION)


def _cursor_lock(*, chain_id: str, wallet_type: str) -> HotWalletCursor:
    """The pool's round-robin cursor, locked (one query where the row exists, as after the pool's first pick)."""
    cursor = HotWalletCursor.objects.select_for_update().filter(chain_id=chain_id, wallet_type=wallet_type).first()
    if cursor is None:
        HotWalletCursor.objects.get_or_create(chain_id=chain_id, wallet_type=wallet_type)
        cursor = HotWalletCursor.objects.select_for_update().get(chain_id=chain_id, wallet_type=wallet_type)
    return cursor


def hot_wallet_select(
    *,
    chain_id: str,
    wallet_type: str,
    amount: Decimal,
    strategy: str = HotWalletStrategy.ROUND_ROBIN,
    balances: Mapping[int, Decimal] | None = None,
    region: str = "",
) -> WalletAddress:
    """
    Pick the hot address of business pool (chain_id, wallet_type) that pays `amount` next (seed 3.1.2).

    Only the pool's enabled hot addresses with a key take part: one business never pays from
    another's pool. `balances` are their real balances of the coin paid ({address id: amount}, read
    from the chain or the UTXO set by the caller; an address missing from it has an unknown
    balance); with amount > 0 only addresses known to hold amount or more take part.
    round_robin: the next one after the pool's last pick, in id order (the cursor row is locked, so
    concurrent pickers take turns). balance: the one holding the most (ties: the lowest id).
    region: round robin among the addresses tagged with the user's region; when none of them can
    pay (or the user has no region), among the pool's untagged addresses, then the whole pool.
    Joins the caller's transaction.
    :raises NoHotWallet: no address of the pool can pay amount.
    :raises UnknownStrategy: strategy is not one of HotWalletStrategy.ALL.
    """
    return hot_wallets_select(
        chain_id=chain_id, wallet_type=wallet_type, wanted=[(amount, region)], strategy=strategy, balances=balances
    )[0]


@transaction.atomic(savepoint=False)
def hot_wallets_select(
    *,
    chain_id: str,
    wallet_type: str,
    wanted: Sequence[tuple[Decimal, str]],
    strategy: str = HotWalletStrategy.ROUND_ROBIN,
    balances: Mapping[int, Decimal] | None = None,
) -> list[WalletAddress]:
    """
    hot_wallet_select for several withdrawals at once ((amount, region) each), picked in order as
    one by one: the pool is read once and the round-robin cursor locked and moved once.
    Joins the caller's transaction.
    :raises NoHotWallet: no address of the pool can pay one of the amounts.
    :raises UnknownStrategy: strategy is not one of HotWalletStrategy.ALL.
    """
    if strategy not in HotWalletStrategy.ALL:
        raise UnknownStrategy(f"Unknown hot wallet strategy {strategy!r}.", field="strategy")
    pool = WalletAddress.objects.filter(chain_id=chain_id, wallet_type=wallet_type, address_type=AddressType.HOT)
    usable = pool.filter(status=AddressStatus.NORMAL, key_secret__isnull=False)
    rows = list(usable.order_by("id"))
    known = balances or {}
    cursor: HotWalletCursor | None = None
    picks = []
    for amount, region in wanted:
        candidates = [row for row in rows if amount <= 0 or (row.id in known and known[row.id] >= amount)]
        if not candidates:
            raise NoHotWallet(
                _no_hot_wallet_text(pool=pool, usable=usable, chain_id=chain_id, wallet_type=wallet_type, amount=amount)
            )
        if strategy == HotWalletStrategy.BALANCE:
            picks.append(max(candidates, key=lambda row: (known.get(row.id, Decimal(-1)), -row.id)))
            continue
        if strategy == HotWalletStrategy.REGION:
            tiers = (
                [row for row in candidates if region and row.region == region],
                [r for r in candidates if not r.region],
            )
            candidates = next((tier for tier in tiers if tier), candidates)
        # Round robin: the cursor row is locked, so concurrent pickers take turns.
        cursor = cursor or _cursor_lock(chain_id=chain_id, wallet_type=wallet_type)
        chosen = next((row for row in candidates if row.id > cursor.last_address_id), candidates[0])
        cursor.last_address_id = chosen.id
        picks.append(chosen)
    if cursor is not None:
        cursor.save(update_fields=["last_address_id", "update_time"])
    return picks


def _no_hot_wallet_text(
    *, pool: QuerySet[WalletAddress], usable: QuerySet[WalletAddress], chain_id: str, wallet_type: str, amount: Decimal
) -> str:
    if usable.exists():
        return f"No enabled {chain_id} hot address of pool {wallet_type!r} is known to hold {amount} or more."
    create = (
        f"`python manage.py create_hot_address --chain {chain_id} --wallet-type {wallet_type}` (the chain's hot"
        f" seed first, if it has none: `python manage.py create_hd_wallet --chain {chain_id} --purpose hot"
        " --backup-file PATH`)"
    )
    unusable = pool.count()
    if unusable:
        return (
            f"No usable hot address for chain {chain_id} and pool {wallet_type!r} ({unusable} disabled or without a"
            f" key): enable one, or create one with {create}."
        )
    return f"No hot address exists for chain {chain_id} and pool {wallet_type!r}: create one with {create}."
