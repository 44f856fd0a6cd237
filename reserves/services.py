"""
Proof of reserves: a snapshot of what the exchange owes each user, committed to in one
Merkle-sum tree per coin, beside what its addresses hold, each address signing the snapshot.

What a leaf holds. A user's claim on the exchange in a coin is what the ledger says they own:
available + frozen - debt (assets.models), in the coin's base units, exactly (a balance finer
than a base unit stops the build rather than being rounded). A claim below zero (a reorg debt
larger than the user's balance) is put in the tree as 0, and what these users owe is kept apart
on the tree row (users_in_debt, debts_excluded_base_units), never netted against the others:
- The tree proves a lower bound of the exchange's liabilities: each user checks that their own
  claim is in it. A negative leaf would lower the total for everyone, and nobody checks a
  debtor's leaf but the debtor. An exchange could add invented debtors to cancel real claims,
  so the scheme must refuse negative values, not trust them.
- A debt is a receivable: money the exchange hopes to recover, not money it holds. Reserves
  must cover the claims without counting on it, so it is left out of the total (reported as a
  figure of its own, which the verifier does not need).
- The debtor still gets a leaf (0) and a proof, so they see that they are counted with nothing
  owed to them; their net position is in the ledger, not hidden in a sum.
The refusal of negatives is enforced where it can be checked: sums are unsigned 16-byte integers
in every hash, each node's hash commits to both children's sums, and the verifier refuses a leaf,
sibling or node sum below 0 or wrapped around 2**128, and any node whose sum is not its
children's. A negative leaf slipped in by a dishonest exchange is caught by any user under its
sibling's subtree who verifies, as with every Merkle-sum proof (it is probabilistic in the number
of users who check); a dropped user finds no leaf, or a proof that does not reach the published
root; a tampered sum breaks the hash chain to the root.

Privacy. Each user's salt is HMAC-SHA-256(tree secret, user id): a user learns their own salt
only, so the sibling hashes they see cannot be linked to other users' ids. Positions are
shuffled. A sibling leaf's sum (one anonymous user's balance) is visible to its neighbour: the
usual price of a Merkle-sum proof.

A consistent snapshot. Every balance of every coin, the BTC UTXO set and the scanner's height,
and the list of addresses are read in one REPEATABLE READ transaction (MariaDB; the project
runs READ COMMITTED otherwise): all those reads see the database as it was at the first one, so
a deposit or withdrawal committed meanwhile is either wholly in the snapshot or wholly out of
it, in every coin. ETH and TRON balances are read from the nodes after it (no network call is
made inside a transaction), each chain at one stated block: ETH at a block number (the node
answers for that block's state), TRON between two reads of the tip that find the same block
(the TRON HTTP API answers only for the tip). The ledger's moment and the chains' heights are
both recorded; reconciling the in-flight difference between them is reconciliation's job.

What the address signatures prove: that whoever runs this wallet controlled each address's
key (or, for a cold address, that ops had its key sign) after the snapshot existed, since the
statement names the snapshot's roots. They do not prove the balance: that is a public fact of
the chain at the stated height, which anyone can look up.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction

from addresses import selectors as addresses_selectors
from addresses import signer as addresses_signer
from addresses.models import AddressType
from assets import selectors as assets_selectors
from chains import registry as chains_registry
from chains.base import ChainAdapter
from chains.evm import EvmAdapter
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from recharges import selectors as recharges_selectors
from reserves import merkle
from reserves import selectors as reserves_selectors
from reserves.models import ReserveAddress, ReserveHolding, ReserveLeaf, ReserveSnapshot, ReserveTree, SignedBy
from tools import verify_reserves
from utxos import selectors as utxos_selectors
from wallet_project.errors import NotFound, WalletError
from wallet_project.money import exact

logger = logging.getLogger(__name__)

# How often an account chain is read again when its tip moved (TRON) or its block was replaced
# (a reorg) while the balances were being read.
CHAIN_READ_ATTEMPTS = 5
LEAF_BATCH = 5_000


class ReservesError(WalletError):
    code = "reserves_error"


class SignatureRefused(WalletError):
    code = "signature_refused"


@dataclass
class AddressReading:
    address_id: int
    chain_id: str
    address: str
    address_type: int
    watch_only: bool
    height: int
    block_hash: str = ""
    balances: dict[str, int] = field(default_factory=dict)  # coin_id -> base units


@dataclass
class CoinLeaves:
    coin: CoinConfig
    leaves: list[tuple[int, int]] = field(default_factory=list)  # (user id, base units)
    users_in_debt: int = 0
    debts_excluded: int = 0


@dataclass
class LedgerRead:
    taken_at: datetime
    coins: list[CoinLeaves]
    # chain_id -> the chain's addresses (BTC: with their holdings from the UTXO set).
    addresses: dict[str, list[AddressReading]]


# --- reading -------------------------------------------------------------------------------------


@contextlib.contextmanager
def consistent_read() -> Iterator[None]:
    """One transaction whose every read sees the database as it was at its first read."""
    if connection.vendor != "mysql":
        with transaction.atomic(durable=True):  # SQLite: a transaction reads one state of the file
            yield
        return
    variable = "@@tx_isolation" if connection.mysql_is_mariadb else "@@transaction_isolation"
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    try:
        with transaction.atomic(durable=True):
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {variable}")
                level = cursor.fetchone()[0]
            # A reconnection between the SET and BEGIN would have reset the session to the default.
            if level != "REPEATABLE-READ":
                raise ReservesError(f"the snapshot transaction runs at {level}, not REPEATABLE READ")
            yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")


def _base_units(value: Decimal, decimals: int) -> int:
    with exact():  # Inexact is trapped: a fraction of a base unit stops the build
        return int(value.scaleb(decimals).to_integral_exact())


def _coin_leaves(coin: CoinConfig) -> CoinLeaves:
    read = CoinLeaves(coin=coin)
    decimals = coin.decimals
    for user_id, available, frozen, debt in assets_selectors.balances_of_coin(coin_id=coin.coin_id):
        try:
            with exact():
                net = _base_units(available + frozen - debt, decimals)
        except ArithmeticError:
            raise ReservesError(f"user {user_id}'s {coin.coin_id} balance is finer than a base unit") from None
        if net < 0:
            read.users_in_debt += 1
            read.debts_excluded -= net
            net = 0
        read.leaves.append((user_id, net))
    return read


def address_rows(chain_id: str) -> list[AddressReading]:
    rows = [
        *addresses_selectors.exchange_addresses_owned(chain_id=chain_id),
        *addresses_selectors.deposit_addresses_assigned(chain_id=chain_id),
    ]
    return [
        AddressReading(
            address_id=row.id,
            chain_id=chain_id,
            address=row.address,
            address_type=row.address_type,
            watch_only=row.address_type == AddressType.COLD or row.key_secret_id is None,
            height=-1,
        )
        for row in sorted(rows, key=lambda r: r.id)
    ]


def _btc_holdings(rows: list[AddressReading], coin: CoinConfig) -> None:
    height = recharges_selectors.scan_height(chain_id="BTC")
    totals = utxos_selectors.utxo_totals_by_address()
    matched = 0
    for reading in rows:
        reading.height = -1 if height is None else height
        sats = totals.get(reading.address_id, 0)
        if sats:
            reading.balances[coin.coin_id] = sats
            matched += sats
    if matched != sum(totals.values()):
        raise ReservesError("the UTXO set holds outputs of addresses that are not the exchange's")


def ledger_read(
    *, coins: Sequence[CoinConfig], now: datetime, progress: Callable[[str], None] | None = None
) -> LedgerRead:
    """
    Read every user balance of coins, the exchange's addresses and the BTC UTXO set in one
    consistent snapshot (see the module docstring).

    :raises ReservesError: a balance finer than a base unit, or a UTXO set that does not add up.
    """
    read = LedgerRead(taken_at=now.replace(microsecond=0), coins=[], addresses={})
    chains = sorted({coin.chain_id for coin in coins})
    with consistent_read():
        for coin in coins:
            read.coins.append(_coin_leaves(coin))
            if progress is not None:
                progress(coin.coin_id)
        for chain_id in chains:
            read.addresses[chain_id] = address_rows(chain_id)
        btc = [coin for coin in coins if coin.chain_id == "BTC"]
        if btc:
            _btc_holdings(read.addresses["BTC"], btc[0])
    return read


def _contract(coin: CoinConfig) -> str | None:
    return None if coins_selectors.coin_is_native(coin=coin) else coin.contract_address


def chain_read(*, adapter: ChainAdapter, coins: Sequence[CoinConfig], rows: list[AddressReading]) -> None:
    """
    Fill in each address's balance of each coin at one stated block of an account chain (ETH, TRON).

    :raises ReservesError: the chain kept moving or reorganising while it was read.
    :raises ChainError: the node failed.
    """
    at_block = isinstance(adapter, EvmAdapter)
    for _ in range(CHAIN_READ_ATTEMPTS):
        height = adapter.tip_height()
        block_hash = adapter.block_hash(height)
        if at_block:  # every address and coin at that block, in batched requests
            wanted = [(row.address, _contract(coin)) for row in rows for coin in coins]
            values = iter(adapter.balances(wanted, height=height))  # type: ignore[attr-defined]
        else:
            values = (adapter.balance(row.address, _contract(coin)) for row in rows for coin in coins)
        balances: list[dict[str, int]] = []
        for _row in rows:
            found = {}
            for coin in coins:
                units = next(values)
                if units:
                    found[coin.coin_id] = units
            balances.append(found)
        still = at_block or adapter.tip_height() == height
        if still and adapter.block_hash(height) == block_hash:
            for row, found in zip(rows, balances, strict=True):
                row.height, row.block_hash, row.balances = height, block_hash, found
            return
    raise ReservesError(f"{adapter.chain_id} moved on while its balances were read ({CHAIN_READ_ATTEMPTS} tries)")


# --- writing -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuiltTree:
    read: CoinLeaves
    secret: bytes
    tree: merkle.Tree


def trees_build(read: LedgerRead) -> list[BuiltTree]:
    """Build each coin's tree over its leaves, in a random order of positions."""
    built = []
    for coin_read in read.coins:
        merkle.positions_shuffle(coin_read.leaves)
        secret = merkle.salt_new_secret()
        tree = merkle.tree_build(secret=secret, leaves=coin_read.leaves)
        built.append(BuiltTree(read=coin_read, secret=secret, tree=tree))
    return built


def leaves_store(*, tree: ReserveTree, leaves: Sequence[tuple[int, int]]) -> None:
    """
    Insert a tree's leaves (position = index in leaves), in batches of multi-row INSERTs.

    A building block of snapshot_store. Through the driver's executemany rather than bulk_create:
    a million model instances cost four times the insert itself (bench/reconcile.py, por_store_s).
    """
    sql = (
        f"INSERT INTO {ReserveLeaf._meta.db_table} (tree_id, position, user_id, balance_base_units) "  # noqa: S608 - names from the model
        "VALUES (%s, %s, %s, %s)"
    )
    with connection.cursor() as cursor:
        for start in range(0, len(leaves), LEAF_BATCH):
            batch = leaves[start : start + LEAF_BATCH]
            rows = [(tree.id, start + i, uid, Decimal(units)) for i, (uid, units) in enumerate(batch)]
            cursor.executemany(sql, rows)


@transaction.atomic(durable=True)
def snapshot_store(*, read: LedgerRead, built: Sequence[BuiltTree]) -> ReserveSnapshot:
    """Store the trees, leaves and address readings as a new (unpublished) snapshot; name it in its statement."""
    snapshot = ReserveSnapshot.objects.create(taken_at=read.taken_at, snapshot_root="", statement="")
    for item in built:
        tree = ReserveTree.objects.create(
            snapshot=snapshot,
            coin=item.read.coin,
            root=item.tree.root.hex(),
            total_base_units=Decimal(item.tree.total),
            leaf_count=item.tree.leaf_count,
            depth=item.tree.depth,
            users_in_debt=item.read.users_in_debt,
            debts_excluded_base_units=Decimal(item.read.debts_excluded),
            salt_secret=item.secret,
            upper=item.tree.upper,
        )
        leaves_store(tree=tree, leaves=item.read.leaves)
    for readings in read.addresses.values():
        for reading in readings:
            if not reading.balances:
                continue  # an empty address proves nothing
            row = ReserveAddress.objects.create(
                snapshot=snapshot,
                chain_id=reading.chain_id,
                address=reading.address,
                address_type=reading.address_type,
                height=reading.height,
                block_hash=reading.block_hash,
                watch_only=reading.watch_only,
            )
            ReserveHolding.objects.bulk_create(
                [
                    ReserveHolding(address=row, coin_id=coin_id, balance_base_units=Decimal(units))
                    for coin_id, units in sorted(reading.balances.items())
                ]
            )
    snapshot.snapshot_root = verify_reserves.snapshot_root(
        (item.read.coin.coin_id, item.tree.root.hex(), item.tree.total) for item in built
    )
    snapshot.statement = verify_reserves.statement(
        snapshot_id=snapshot.id,
        snapshot_root_hex=snapshot.snapshot_root,
        taken_at=reserves_selectors.taken_at_text(snapshot.taken_at),
    )
    snapshot.save(update_fields=["snapshot_root", "statement"])
    return snapshot


@transaction.atomic(durable=True)
def _signatures_store(*, snapshot_id: int, signatures: dict[int, str], now: datetime) -> ReserveSnapshot:
    snapshot = ReserveSnapshot.objects.select_for_update().get(id=snapshot_id)
    for address_id, signature in signatures.items():
        ReserveAddress.objects.filter(id=address_id, snapshot=snapshot, signature="").update(
            signature=signature, signed_by=SignedBy.KEY, signed_at=now
        )
    if not snapshot.addresses.filter(watch_only=False, signature="").exists():
        snapshot.published_at = now
        snapshot.save(update_fields=["published_at"])
    return snapshot


def snapshot_sign(*, snapshot_id: int, now: datetime) -> ReserveSnapshot:
    """
    Have every address with a key here sign the snapshot's statement, check each signature as a
    user's verifier will, and publish the snapshot once all have signed.

    :raises SignerError: an address's key is missing or does not match it.
    :raises ReservesError: a signature does not verify (it is never stored).
    """
    snapshot = ReserveSnapshot.objects.get(id=snapshot_id)
    signatures = {}
    for row in snapshot.addresses.filter(watch_only=False, signature="").order_by("id"):
        message = snapshot.statement
        signature = addresses_signer.message_sign(chain_id=row.chain_id, address=row.address, message=message)
        if not verify_reserves.signature_verify(
            chain_id=row.chain_id, address=row.address, message=snapshot.statement, signature=signature
        ):
            raise ReservesError(f"the signature of {row.address} does not verify")
        signatures[row.id] = signature
    return _signatures_store(snapshot_id=snapshot.id, signatures=signatures, now=now)


def snapshot_build(
    *,
    now: datetime,
    coin_ids: Sequence[str] | None = None,
    adapters: dict[str, ChainAdapter] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReserveSnapshot:
    """
    Take a proof-of-reserves snapshot of coin_ids (default: every coin) and publish it signed.

    :raises ReservesError, ChainError, SignerError: see ledger_read, chain_read, snapshot_sign.
    """
    coins = list(coins_selectors.coin_list(enabled_only=False))
    if coin_ids is not None:
        unknown = sorted(set(coin_ids) - {coin.coin_id for coin in coins})
        if unknown:
            raise ReservesError(f"unknown coin {unknown[0]}", field="coin")
        coins = [coin for coin in coins if coin.coin_id in coin_ids]
    read = ledger_read(coins=coins, now=now, progress=progress)
    for chain_id, rows in read.addresses.items():
        if chain_id == "BTC" or not rows:
            continue
        adapter = (adapters or {}).get(chain_id) or chains_registry.adapter_for(chain_id)
        chain_read(adapter=adapter, coins=[coin for coin in coins if coin.chain_id == chain_id], rows=rows)
    built = trees_build(read)
    snapshot = snapshot_store(read=read, built=built)
    logger.info(
        "reserves snapshot %s stored: %s coins, %s addresses", snapshot.id, len(built), snapshot.addresses.count()
    )
    return snapshot_sign(snapshot_id=snapshot.id, now=now)


@transaction.atomic(durable=True)
def signature_import(
    *, snapshot_id: int, address: str, signature: str, operator: AbstractBaseUser | None, now: datetime
) -> ReserveAddress:
    """
    Store ops' signature of a watch-only (cold) address over the snapshot's statement, once it verifies.

    :raises NotFound: no such snapshot address.
    :raises SignatureRefused: the signature does not verify, or the address already has one.
    """
    row = (
        ReserveAddress.objects.select_for_update()
        .select_related("snapshot")
        .filter(snapshot_id=snapshot_id, address=address.strip())
        .first()
    )
    if row is None or row.address != address.strip():
        raise NotFound(f"snapshot {snapshot_id} lists no address {address.strip()}", field="address")
    if not row.watch_only:
        raise SignatureRefused(f"{row.address} is signed by its own key here, not by ops", field="address")
    if row.signature:
        raise SignatureRefused(f"{row.address} already has a signature in snapshot {snapshot_id}", field="address")
    text = signature.strip()
    try:
        good = verify_reserves.signature_verify(
            chain_id=row.chain_id, address=row.address, message=row.snapshot.statement, signature=text
        )
    except verify_reserves.SignatureUnchecked as exc:
        raise SignatureRefused(f"the signature cannot be checked here: {exc}", field="signature") from None
    if not good:
        raise SignatureRefused(
            f"the signature does not verify for {row.address} over the statement of snapshot {snapshot_id}",
            field="signature",
        )
    row.signature, row.signed_by, row.signed_at, row.signature_operator = text, SignedBy.OPS, now, operator
    row.save(update_fields=["signature", "signed_by", "signed_at", "signature_operator"])
    logger.info("cold address %s signed snapshot %s (supplied by ops)", row.address, snapshot_id)
    return row
