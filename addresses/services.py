"""
Writes of the addresses app: the deposit address pool, allocation to users, hot and cold wallets.

Addresses are derived from each HD seed's account xpub (KeySecret.account_xpub): no secret is
decrypted here. Keys are used by addresses.signer only.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from addresses import hd
from addresses.hot_wallets import (  # noqa: F401 - re-exported: callers know them as addresses.services'
    ColdAddressTaken,
    HotWalletStrategy,
    NoHotWallet,
    UnknownStrategy,
    cold_address_add,
    hot_address_region_set,
    hot_wallet_select,
    hot_wallets_select,
    user_region_set,
)
from addresses.models import (
    AddressStatus,
    AddressStatusChange,
    AddressType,
    KeySecret,
    SecretKind,
    WalletAddress,
)
from coins import selectors as coins_selectors
from coins.models import Switch
from wallet_project.errors import Conflict, NotFound, WalletError

logger = logging.getLogger(__name__)

POOL_BATCH_ROWS = 2000
_PLAIN_ADDRESS = re.compile(r"[0-9A-Za-z]{20,100}")


class UnsupportedChain(WalletError):
    code = "unsupported_chain"


class RechargeDisabled(WalletError):
    code = "recharge_disabled"


class NoHdWallet(WalletError):
    """The chain has no HD seed for this purpose yet: ops run create_hd_wallet first."""

    code = "hd_wallet_missing"
    http_status = 503


class DepositAddressDisabled(Conflict):
    """The user's deposit address of this chain was disabled by ops: it is not handed out."""

    code = "deposit_address_disabled"


class AddressStatusConflict(Conflict):
    code = "address_status_conflict"


class RemarkRequired(WalletError):
    code = "remark_required"


def _hd_wallet_lock(*, chain_id: str, purpose: AddressType) -> KeySecret:
    try:
        return KeySecret.objects.select_for_update().get(
            chain_id=chain_id, purpose=purpose, kind=SecretKind.HD_SEED, seed_slot=1
        )
    except KeySecret.DoesNotExist:
        raise NoHdWallet(f"{chain_id} has no HD seed for {AddressType(purpose).label} addresses yet.") from None


@transaction.atomic(savepoint=False)
def addresses_derive_next(
    *,
    chain_id: str,
    purpose: AddressType,
    count: int,
    wallet_type: str = "default",
    user: AbstractBaseUser | None = None,
    address_type: AddressType | None = None,
) -> list[WalletAddress]:
    """
    Derive the next `count` addresses of the chain's HD seed for purpose and insert them.

    The rows get address_type `purpose` unless another is given (CHANGE, from the hot seed).

    Joins the caller's transaction and locks the seed's vault row until it commits: index
    allocation is serialised, and the rows and the moved next_index commit (or vanish) together,
    so a crash never skips or repeats an index.
    :raises NoHdWallet: no seed for this chain and purpose.
    """
    secret = _hd_wallet_lock(chain_id=chain_id, purpose=purpose)
    coin = coins_selectors.chain_native_coin(chain_id=chain_id)
    start = secret.next_index
    now = timezone.now() if user is not None else None
    rows = []
    last = start - 1
    for index, address in hd.addresses_derive(chain_id, secret.account_xpub, start, count):
        rows.append(
            WalletAddress(
                coin=coin,
                coin_name=coin.coin_name,
                chain_id=chain_id,
                address_type=address_type if address_type is not None else purpose,
                address=address,
                wallet_type=wallet_type,
                user=user,
                key_secret=secret,
                derivation_path=f"{secret.account_path}/0/{index}",
                derivation_index=index,
                assign_time=now,
            )
        )
        last = index
    WalletAddress.objects.bulk_create(rows, batch_size=POOL_BATCH_ROWS)
    secret.next_index = max(last + 1, start + count)
    secret.save(update_fields=["next_index"])
    return rows


class PoolConflict(WalletError):
    """Another filler moved the seed's next index meanwhile; nothing of this batch was written."""

    code = "pool_conflict"


def _pool_rows_insert(*, secret: KeySecret, coin_id: str, coin_name: str, derived: list[tuple[int, str]]) -> None:
    # One multi-row INSERT per batch: the ORM's bulk_create spends ~4x the time of the insert
    # itself preparing values, and this is the pool's hot path. The columns are the model's;
    # test_pool checks the rows equal what the ORM path (addresses_derive_next) writes.
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    fields = {f.name: f for f in WalletAddress._meta.concrete_fields}
    balance, min_balance, max_balance = (
        str(fields[n].get_default()) for n in ("balance", "min_balance", "max_balance")
    )
    path = secret.account_path + "/0/"
    sql = (
        "INSERT INTO wallet_address (coin_id, coin_name, chain_id, address_type, address, "
        "wallet_type, key_secret_id, derivation_path, derivation_index, status, balance, min_balance, max_balance, "
        "create_time, update_time) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    )
    params = [
        (
            coin_id,
            coin_name,
            secret.chain_id,
            AddressType.USER_DEPOSIT,
            address,
            "default",
            secret.id,
            path + str(index),
            index,
            AddressStatus.NORMAL,
            balance,
            min_balance,
            max_balance,
            now,
            now,
        )
        for index, address in derived
    ]
    with connection.cursor() as cursor:
        if connection.vendor != "mysql" or not params:
            cursor.executemany(sql, params)
            return
        # MySQL/MariaDB: one statement built here. mysqlclient's executemany quotes every value of
        # every row in Python (~15 us a row, holding the GIL); only the address and the index vary,
        # so the constant parts are quoted once by the driver, and each address is checked to be
        # plain base58/hex/bech32 characters before it is placed between quotes.
        literal = connection.connection.literal
        first = params[0]
        head = "(" + ", ".join(literal(v).decode() for v in first[:4]) + ", '"
        middle = "', " + ", ".join(literal(v).decode() for v in first[5:7]) + ", " + literal(path).decode()[:-1]
        tail = ", " + ", ".join(literal(v).decode() for v in first[9:]) + ")"
        values = []
        for index, address in derived:
            if not _PLAIN_ADDRESS.fullmatch(address):
                raise ValueError("a derived address has unexpected characters")
            values.append(f"{head}{address}{middle}{index}', {index}{tail}")
        cursor.execute(sql.split(" VALUES ")[0] + " VALUES " + ", ".join(values))


@transaction.atomic(durable=True)
def _pool_batch_store(*, secret_id: int, start: int, count: int, derived: list[tuple[int, str]]) -> None:
    secret = KeySecret.objects.select_for_update().get(id=secret_id)
    # Compare-and-set: the addresses were derived outside the lock for indexes start.. ; if another
    # filler took them meanwhile, the unique (key_secret, derivation_index) would refuse anyway.
    if secret.next_index != start:
        raise PoolConflict(f"The {secret.chain_id} deposit seed's next index moved; run the fill again.")
    coin = coins_selectors.chain_native_coin(chain_id=secret.chain_id)
    _pool_rows_insert(secret=secret, coin_id=coin.coin_id, coin_name=coin.coin_name, derived=derived)
    secret.next_index = start + count
    secret.save(update_fields=["next_index"])


class _PoolWriter(threading.Thread):
    """Stores derived batches on its own connection while the caller derives the next one.

    mysqlclient releases the GIL while MariaDB works, so the insert of batch k overlaps the
    (CPU-bound) derivation of batch k+1.
    """

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        super().__init__(name="address-pool-writer", daemon=True)
        self.batches: queue.Queue = queue.Queue(maxsize=2)
        self.progress = progress
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while (batch := self.batches.get()) is not None:
                if self.error is None:
                    try:
                        _pool_batch_store(**batch)
                        if self.progress is not None:
                            self.progress(batch["count"])
                    except BaseException as exc:  # handed to the caller's thread, raised there
                        self.error = exc
        finally:
            connection.close()


def address_pool_fill(
    *,
    chain_id: str,
    count: int,
    batch_size: int = POOL_BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
    pipelined: bool | None = None,
) -> int:
    """
    Add `count` unassigned deposit addresses to the chain's pool; return how many were added.

    Batches are derived from the seed's account xpub outside any lock, then stored one
    transaction each: lock the seed row, check its next index is still the batch's first
    (PoolConflict otherwise), insert, move the index. An interrupted fill keeps the batches it
    committed and the next run continues after the highest index used. Pipelined (the default
    on MySQL/MariaDB outside a transaction) stores batch k on a second connection while batch
    k+1 is derived.
    :raises NoHdWallet: no deposit seed for this chain.
    :raises PoolConflict: another fill of the same chain ran at the same time.
    """
    try:
        secret = KeySecret.objects.get(chain_id=chain_id, purpose=AddressType.USER_DEPOSIT, seed_slot=1)
    except KeySecret.DoesNotExist:
        raise NoHdWallet(f"{chain_id} has no HD seed for user deposit addresses yet.") from None
    if pipelined is None:
        pipelined = connection.vendor == "mysql" and not connection.in_atomic_block
    writer = _PoolWriter(progress) if pipelined else None
    if writer is not None:
        writer.start()
    next_start, added = secret.next_index, 0
    try:
        while added < count and (writer is None or writer.error is None):
            step = min(batch_size, count - added)
            derived = list(hd.addresses_derive(chain_id, secret.account_xpub, next_start, step))
            batch = {"secret_id": secret.id, "start": next_start, "count": step, "derived": derived}
            if writer is None:
                _pool_batch_store(**batch)
                if progress is not None:
                    progress(step)
            else:
                writer.batches.put(batch)
            next_start, added = next_start + step, added + step
    finally:
        if writer is not None:
            writer.batches.put(None)
            writer.join()
    if writer is not None and writer.error is not None:
        raise writer.error
    logger.info("address pool of %s: %s addresses added", chain_id, added)
    return added


def address_pool_top_up(*, chain_id: str, minimum: int, batch: int) -> int:
    """Fill the chain's pool by `batch` if fewer than `minimum` unassigned addresses are left."""
    from addresses import selectors as addresses_selectors

    available = addresses_selectors.address_pool_available(chain_id=chain_id)
    if available >= minimum:
        return 0
    return address_pool_fill(chain_id=chain_id, count=batch)


def _coin_for_deposit(coin_id: str):
    coin = coins_selectors.coin_get_enabled(coin_id=coin_id)
    if coin.recharge_enabled != Switch.ENABLED:
        raise RechargeDisabled(f"Deposits of {coin.coin_id} are switched off.", field="coin")
    if coin.chain_id not in hd.CHAINS:
        raise UnsupportedChain(f"Coin {coin.coin_id} is on an unsupported chain.", field="coin")
    return coin


@transaction.atomic(durable=True)
def deposit_address_assign(*, user: AbstractBaseUser, coin_id: str) -> WalletAddress:
    """
    Return the user's deposit address for the chain of coin_id, assigning one on first request.

    The user's row is locked first: concurrent first requests of one user queue up and the later
    ones find the address the first assigned. A pool row is taken with SKIP LOCKED, so users
    being served at the same time take different rows; with the pool empty one is derived.
    The unique (user, chain_id) key keeps one address per user and chain whatever happens.
    :raises UnknownCoin, CoinDisabled, RechargeDisabled, UnsupportedChain: the coin cannot receive deposits.
    :raises NoHdWallet: the pool is empty and the chain has no deposit seed.
    """
    coin = _coin_for_deposit(coin_id)
    type(user).objects.select_for_update().filter(pk=user.pk).first()
    existing = (
        WalletAddress.objects.filter(user=user, chain_id=coin.chain_id, address_type=AddressType.USER_DEPOSIT)
        .order_by("id")
        .first()
    )
    if existing is not None:
        if existing.status != AddressStatus.NORMAL:
            # One address per user and chain: a disabled one is not replaced, and never handed out.
            raise DepositAddressDisabled(
                f"Your {coin.chain_id} deposit address is disabled: contact support before depositing.", field="coin"
            )
        return existing
    row = (
        WalletAddress.objects.select_for_update(skip_locked=True)
        .filter(
            chain_id=coin.chain_id,
            address_type=AddressType.USER_DEPOSIT,
            user__isnull=True,
            status=AddressStatus.NORMAL,
        )
        .order_by("id")
        .first()
    )
    if row is None:
        logger.warning("address pool of %s is empty: deriving a deposit address on demand", coin.chain_id)
        (row,) = addresses_derive_next(chain_id=coin.chain_id, purpose=AddressType.USER_DEPOSIT, count=1, user=user)
        return row
    row.user = user
    row.assign_time = timezone.now()
    row.save(update_fields=["user", "assign_time", "update_time"])
    logger.info("deposit address %s of %s assigned to user %s", row.id, coin.chain_id, user.pk)
    return row


# Each status change, and the status it must start from.
_STATUS_SOURCE = {AddressStatus.DISABLED: AddressStatus.NORMAL, AddressStatus.NORMAL: AddressStatus.DISABLED}


@transaction.atomic(durable=True)
def address_status_set(*, address_id: int, status: AddressStatus, operator_id: int, remark: str) -> WalletAddress:
    """
    Disable (or enable again) one address in the name of operator, and record who, when and why.

    The row is locked and only its status is written: an assignment to a user or a balance that
    another service committed meanwhile is kept. A disabled address is not handed to a user, not
    picked to pay a withdrawal, and a user whose deposit address is disabled is refused.
    :raises RemarkRequired: remark is blank.
    :raises NotFound: no such address.
    :raises AddressStatusConflict: the address is not in the status this change starts from.
    """
    remark = remark.strip()
    if not remark:
        raise RemarkRequired("Say why the address's status changes.", field="remark")
    target = AddressStatus(status)
    row = WalletAddress.objects.select_for_update().filter(id=address_id).first()
    if row is None:
        raise NotFound(f"Unknown address {address_id}.")
    source = row.status
    if source != _STATUS_SOURCE[target]:
        raise AddressStatusConflict(f"Address {row.address} is already {target.label}.")
    row.status = target
    row.save(update_fields=["status", "update_time"])
    AddressStatusChange.objects.create(
        address=row, from_status=source, to_status=target, operator_id=operator_id, remark=remark
    )
    logger.info("address %s set %s by user %s", row.id, target.label, operator_id)
    return row


@transaction.atomic(durable=True)
def hot_addresses_create(*, chain_id: str, wallet_type: str, count: int = 1) -> list[WalletAddress]:
    """Derive `count` new hot wallet addresses of business pool wallet_type from the chain's hot seed.

    :raises NoHdWallet: the chain has no hot seed.
    """
    return addresses_derive_next(chain_id=chain_id, purpose=AddressType.HOT, count=count, wallet_type=wallet_type)


# Change addresses derived at once when none is left: later payouts take the rest without
# waiting for the hot seed's row lock.
CHANGE_BATCH = 20


@transaction.atomic(savepoint=False)
@transaction.atomic(savepoint=False)
def change_address_take(*, chain_id: str, wallet_type: str, now: datetime) -> WalletAddress:
    """
    Take a fresh change address of business pool (chain_id, wallet_type), never used before.

    For a payout's change on a UTXO chain: joins the caller's transaction, which stores the
    signed transaction paying to it. The row is taken with SKIP LOCKED (concurrent payouts take
    different rows) and stamped (assign_time); if none is left, CHANGE_BATCH are derived from
    the hot seed (its row stays locked until the caller commits). A rollback returns the address.
    :raises NoHdWallet: the chain has no hot seed.
    """
    fresh = WalletAddress.objects.select_for_update(skip_locked=True).filter(
        chain_id=chain_id,
        address_type=AddressType.CHANGE,
        wallet_type=wallet_type,
        assign_time__isnull=True,
        status=AddressStatus.NORMAL,
    )
    row = fresh.order_by("id").first()
    if row is None:
        addresses_derive_next(
            chain_id=chain_id,
            purpose=AddressType.HOT,
            count=CHANGE_BATCH,
            wallet_type=wallet_type,
            address_type=AddressType.CHANGE,
        )
        row = fresh.order_by("id").first()  # ours now: this transaction wrote (and holds) them
        if row is None:
            raise NoHdWallet(f"No change address of {chain_id} pool {wallet_type!r} could be derived.")
    row.assign_time = now
    row.save(update_fields=["assign_time", "update_time"])
    return row
