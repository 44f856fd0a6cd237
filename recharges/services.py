"""
Deposits: the block scanner, reorg handling, confirmations and crediting.

Every tick of a chain runs two entry points, each in short transactions of its own:

- `deposits_scan_batch` fetches blocks by RPC outside any transaction, then for each block, in
  one transaction: compare-and-set the cursor (another scanner that got there first makes this
  one stop with CursorMoved), store the block hash and create the deposit rows (PENDING)
  idempotently under their unique key (coin, tx_hash, log_index). A parent hash that does not
  match the stored one starts the reorg path: walk back to the fork point, mark the deposits of
  orphaned blocks REORGED (reversing those already credited), move the cursor back, rescan.
- `deposits_confirm` counts confirmations from the tip the scanner stored, re-checks that each
  due deposit's block is still canonical, then credits each deposit in one transaction of its
  own (lock the row, check it is still PENDING, post to the ledger, mark CONFIRMED, outbox event).

Every step is idempotent, so a crash between any two steps and a restart, the same block
scanned twice, or two scanners at once credit every deposit exactly once.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from assets import events as assets_events
from assets import house as assets_house
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import BusinessType, HouseAccount
from chains.base import Block, ChainAdapter, ChainError
from coins import selectors as coins_selectors
from coins.models import CoinConfig, Switch
from monitoring import services as monitoring_services
from monitoring.models import Severity
from recharges import matching, shortfalls, treasury, watchlist
from recharges.models import RecentBlock, RechargeRecord, RechargeStatus, ScanCursor
from utxos import services as utxos_services
from wallet_project import money
from wallet_project.db import retry_on_deadlock, rows_insert, rows_insert_ignoring_conflicts
from wallet_project.errors import Conflict, WalletError
from wallet_project.ids import business_no

logger = logging.getLogger(__name__)

# Errors a node (or an adapter parsing a node's answer) can produce: logged, alerted, retried.
NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError, TypeError, KeyError, AttributeError)

# ... and building a chain's adapter from settings (a misconfigured chain).
ADAPTER_ERRORS: tuple[type[Exception], ...] = (*NODE_ERRORS, ImportError, LookupError, ImproperlyConfigured)

# Statuses of a deposit that still sits in a block we believe in.
LIVE_STATUSES = (
    RechargeStatus.PENDING,
    RechargeStatus.CONFIRMED,
    RechargeStatus.BELOW_MINIMUM,
    RechargeStatus.RECHARGE_DISABLED,
    RechargeStatus.ABOVE_MAXIMUM,
)

# Fault injection: tests set this to a callable that raises, or kills the process, when the
# named step is reached, to prove that a crash between any two steps loses and doubles nothing.
# Always None in a running service.
fault_hook: Callable[[str], None] | None = None

# What the ledger (or the database) can refuse of a settle batch: the batch is then settled one by one.
SETTLE_ERRORS: tuple[type[Exception], ...] = (WalletError, IntegrityError)

# Rows per IN list / multi-row insert when recording deposits.
UPSERT_CHUNK = 500
# Deposits settled per transaction by the confirmation job (one coin per transaction).
SETTLE_BATCH = 500


def _step(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


class CursorMoved(WalletError):
    """Another scanner advanced (or reset) the chain's cursor first; its work covers ours."""

    code = "cursor_moved"


class DepositNotStored(WalletError):
    """The database rejected a deposit row (not as a duplicate): the block batch is rolled back."""

    code = "deposit_not_stored"


@dataclass(frozen=True)
class ScanResult:
    chain_id: str
    blocks: int = 0
    deposits: int = 0
    height: int | None = None
    tip: int | None = None
    fork_point: int | None = None
    error: str | None = None

    @property
    def caught_up(self) -> bool:
        return self.error is None and self.height is not None and self.tip is not None and self.height >= self.tip


@dataclass(frozen=True)
class ConfirmResult:
    chain_id: str
    credited: int = 0
    below_minimum: int = 0
    disabled: int = 0
    above_maximum: int = 0
    # Including deposits whose settling failed (left PENDING, alerted RECHARGE_SETTLE_FAILED).
    waiting: int = 0
    error: str | None = None


def adapter_for(chain_id: str) -> ChainAdapter:
    """Return the configured adapter of a chain (from the chains app's registry)."""
    from chains import registry as chains_registry  # the registry builds node clients lazily

    return chains_registry.adapter_for(chain_id)


# --- failures ------------------------------------------------------------------------------


def _node_failure(*, chain_id: str, action: str, exc: BaseException, now: datetime) -> str:
    """Log and alert a node failure in a transaction of its own; nothing else is written."""
    text = f"{action} failed: {type(exc).__name__}: {str(exc)[:300]}"
    logger.warning("deposit scanner of %s: node error, retrying next tick: %s", chain_id, text)
    monitoring_services.alert_raise_alone(
        severity=Severity.WARNING, kind="NODE_DOWN", subject=f"chain {chain_id}", message=text, now=now
    )
    return text


# --- cursor and chain data ---------------------------------------------------------------------


def _chain_coins(*, chain_id: str) -> list[CoinConfig]:
    return list(coins_selectors.coin_list(enabled_only=False).filter(chain_id=chain_id))


def _coin_rules(*, chain_id: str, adapter: ChainAdapter, now: datetime) -> matching.CoinRules:
    """
    Return which coin each transfer of the chain is, by the one rule of coins.selectors.

    :raises CoinMisconfigured: the chain's coins are ambiguous (no native coin or two, a token
        without a valid contract...); a critical COIN_MISCONFIGURED alert is raised first.
    """

    def contract_key(contract: str) -> str:
        try:
            return adapter.match_key(contract)
        except ChainError as exc:
            raise ValueError(str(exc)) from exc

    try:
        coins = coins_selectors.chain_coins(chain_id=chain_id, contract_key=contract_key)
    except coins_selectors.CoinMisconfigured as exc:
        # Scanning on would record a transfer as the wrong coin (a native deposit credited as a
        # token): nothing of the chain is recorded until ops fix its coins in the admin.
        monitoring_services.alert_raise_alone(
            severity=Severity.CRITICAL,
            kind="COIN_MISCONFIGURED",
            subject=f"chain {chain_id}",
            message=f"{exc.message} Deposits of {chain_id} are not scanned until its coins are fixed in the admin.",
            now=now,
        )
        raise
    return matching.CoinRules(
        chain_id=chain_id,
        native_coin_id=coins.native.coin_id,
        tokens={key: coin.coin_id for key, coin in coins.tokens.items()},
        coin_ids=tuple(c.coin_id for c in coins.coins),
    )


def scan_cursor_ensure(*, chain_id: str, adapter: ChainAdapter | None = None) -> ScanCursor:
    """
    Start the chain's scanner at the node's tip now if it never started (else leave it where it is).

    What is mined after this is scanned: the development set-up calls it before it funds the hot
    wallets, so that the funding is seen, and booked as a treasury receipt.
    :raises ChainError: (and other NODE_ERRORS) the node failed.
    """
    adapter = adapter or adapter_for(chain_id)
    return _cursor_get_or_create(chain_id=chain_id, adapter=adapter, tip=adapter.tip_height())


def _cursor_get_or_create(*, chain_id: str, adapter: ChainAdapter, tip: int) -> ScanCursor:
    """
    Return the chain's cursor, creating it the first time at the configured start (or the tip).

    The block below the start is stored as an anchor, so that a reorg of the very first scanned
    block still finds its fork point.
    :raises ChainError: (and other NODE_ERRORS) reading the anchor's hash failed.
    """
    cursor = ScanCursor.objects.filter(chain_id=chain_id).first()
    if cursor is not None:
        return cursor
    starts = settings.SCAN_START_HEIGHTS
    start = starts[chain_id] if chain_id in starts else tip
    anchor = _node_hash(adapter=adapter, height=start - 1) if start > 0 else None
    try:
        with transaction.atomic(durable=True):
            cursor = ScanCursor.objects.create(chain_id=chain_id, height=start - 1, tip_height=tip)
            if anchor is not None:
                RecentBlock.objects.create(chain_id=chain_id, height=start - 1, hash=anchor, parent_hash="")
            return cursor
    except IntegrityError:  # another scanner created it first
        return ScanCursor.objects.get(chain_id=chain_id)


def _block_checked(*, block: object, height: int) -> Block:
    ok = (
        isinstance(block, Block)
        and block.number == height
        and isinstance(block.hash, str)
        and 0 < len(block.hash) <= 128
        and isinstance(block.parent_hash, str)
        and len(block.parent_hash) <= 128
        and block.hash != block.parent_hash
        and isinstance(block.timestamp, int)
        and isinstance(block.transfers, list)
    )
    if not ok:
        raise ChainError(f"malformed block at height {height}")
    return block


def _block_filters(adapter: ChainAdapter) -> bool:
    """Whether the adapter's block() takes the watch list (so it skips work for other addresses)."""
    try:
        return "watched" in inspect.signature(adapter.block).parameters
    except (TypeError, ValueError):
        return False


def _blocks_fetch(
    *, adapter: ChainAdapter, first: int, last: int, watch: matching.Watch, now: datetime
) -> tuple[list[Block], str | None]:
    """
    Read blocks first..last in order; return those read before the first failure and its description.

    An adapter with blocks(first, last) reads the range in few node calls (EVM: one batched request
    and one eth_getLogs). If that fails (a bad block, a reorg while reading, the node), the range is
    read again block by block, so the blocks before the failure still count and the failure is
    reported at its exact height.
    """
    if last < first:
        return [], None
    filtered = _block_filters(adapter)
    ranged = getattr(adapter, "blocks", None)
    if callable(ranged) and last > first:
        try:
            found = ranged(first, last, watched=watch) if filtered else ranged(first, last)
            return [
                _block_checked(block=block, height=height)
                for height, block in zip(range(first, last + 1), found, strict=True)
            ], None
        except NODE_ERRORS as exc:
            logger.info(
                "range read %s..%s of %s failed (%s): reading block by block",
                first,
                last,
                adapter.chain_id,
                type(exc).__name__,
            )
    blocks: list[Block] = []
    for height in range(first, last + 1):
        try:
            if filtered:
                block = adapter.block(height, watched=watch)  # type: ignore[call-arg]
            else:
                block = adapter.block(height)
            blocks.append(_block_checked(block=block, height=height))
        except NODE_ERRORS as exc:
            return blocks, _node_failure(chain_id=adapter.chain_id, action=f"block({height})", exc=exc, now=now)
    return blocks, None


def _node_hash(*, adapter: ChainAdapter, height: int) -> str:
    value = adapter.block_hash(height)
    if not isinstance(value, str) or not value:
        raise ChainError(f"malformed block hash at height {height}")
    return value


# --- scanning ------------------------------------------------------------------------------------


def deposits_scan_batch(*, chain_id: str, now: datetime, adapter: ChainAdapter | None = None) -> ScanResult:
    """
    Scan the chain's next blocks (up to SCAN_BATCH_BLOCKS) and record the deposits they carry.

    Node failures and malformed answers are logged and alerted and the batch stops where it
    failed; the next tick retries. Nothing is committed from a block that was not fully read. A
    deposit row the database rejects rolls the batch back and raises a critical
    DEPOSIT_NOT_STORED alert; the cursor stays before it. Blocks an address the watch list learned
    late may have been paid in are read again afterwards, a batch at a time (see watchlist).
    :raises CursorMoved: another scanner moved the cursor while this one was working.
    """
    if adapter is None:
        try:
            adapter = adapter_for(chain_id)
        except ADAPTER_ERRORS as exc:
            return ScanResult(
                chain_id=chain_id, error=_node_failure(chain_id=chain_id, action="adapter", exc=exc, now=now)
            )
    result = _scan_batch(chain_id=chain_id, adapter=adapter, now=now)
    late_from = watchlist.watchlist_rescan_take(chain_id=chain_id)
    if late_from is not None:
        error = _late_rescan(chain_id=chain_id, adapter=adapter, from_height=late_from, now=now)
        if error is not None and result.error is None:
            result = dataclasses.replace(result, error=error)
    return result


def _scan_batch(*, chain_id: str, adapter: ChainAdapter, now: datetime) -> ScanResult:
    try:
        tip = adapter.tip_height()
        if not isinstance(tip, int) or isinstance(tip, bool) or tip < 0:
            raise ChainError("malformed tip height")
    except NODE_ERRORS as exc:
        return ScanResult(chain_id=chain_id, error=_node_failure(chain_id=chain_id, action="tip", exc=exc, now=now))

    try:
        cursor = _cursor_get_or_create(chain_id=chain_id, adapter=adapter, tip=tip)
    except NODE_ERRORS as exc:
        return ScanResult(chain_id=chain_id, error=_node_failure(chain_id=chain_id, action="anchor", exc=exc, now=now))
    ScanCursor.objects.filter(chain_id=chain_id).update(tip_height=tip, tip_time=now)
    stored_tip = RecentBlock.objects.filter(chain_id=chain_id, height=cursor.height).first()

    if tip <= cursor.height:
        # Nothing new. Check the last block we processed is still the node's: a reorg can replace
        # it at the same height, or shorten the chain.
        if stored_tip is None:
            return ScanResult(chain_id=chain_id, height=cursor.height, tip=tip)
        try:
            same = tip == cursor.height and _node_hash(adapter=adapter, height=cursor.height) == stored_tip.hash
        except NODE_ERRORS as exc:
            error = _node_failure(chain_id=chain_id, action=f"block_hash({cursor.height})", exc=exc, now=now)
            return ScanResult(chain_id=chain_id, height=cursor.height, tip=tip, error=error)
        if same:
            return ScanResult(chain_id=chain_id, height=cursor.height, tip=tip)
        return _reorg_resolve(adapter=adapter, cursor=cursor, tip=tip, now=now)

    try:
        rules = _coin_rules(chain_id=chain_id, adapter=adapter, now=now)
    except coins_selectors.CoinMisconfigured as exc:
        return ScanResult(chain_id=chain_id, height=cursor.height, tip=tip, error=exc.message)
    last = min(tip, cursor.height + settings.SCAN_BATCH_BLOCKS)
    watch, version = watchlist.watchlist_get(chain_id=chain_id, adapter=adapter, height=cursor.height)
    blocks, error = _blocks_fetch(adapter=adapter, first=cursor.height + 1, last=last, watch=watch, now=now)
    _step("scan.fetched")
    # Refresh again AFTER the fetch (see watchlist's docstring): an address assigned meanwhile
    # may have been paid in a block the node filtered with the older list, so read those again.
    watch, newer = watchlist.watchlist_get(chain_id=chain_id, adapter=adapter)
    if newer != version and _block_filters(adapter) and blocks:
        blocks, error = _blocks_fetch(
            adapter=adapter, first=blocks[0].number, last=blocks[-1].number, watch=watch, now=now
        )
    expected = (cursor.height, cursor.version)
    parent = stored_tip.hash if stored_tip is not None else None
    scanned: list[tuple[Block, list[matching.Candidate]]] = []
    forked = False
    for block in blocks:
        if parent is not None and block.parent_hash != parent:
            forked = True
            break
        try:
            candidates, ignored = matching.transfers_match(
                transfers=block.transfers, watch=watch, rules=rules, contract_key=adapter.match_key
            )
        except ChainError as exc:
            error = _node_failure(chain_id=chain_id, action=f"block({block.number})", exc=exc, now=now)
            break
        for item in ignored:
            logger.info(
                "deposit ignored on %s: %s (block %s, tx %s, index %s, to %s, contract %s)",
                chain_id,
                item.reason,
                block.number,
                item.transfer.tx_hash,
                item.transfer.index,
                item.transfer.to_address,
                item.transfer.contract,
            )
        scanned.append((block, candidates))
        parent = block.hash
    receipts = treasury.receipts_match(
        blocks=[block for block, _ in scanned], watch=watch, rules=rules, adapter=adapter
    )
    if scanned:
        # The blocks that extend the stored chain, all in one transaction.
        try:
            expected = retry_on_deadlock(
                functools.partial(
                    _blocks_commit,
                    chain_id=chain_id,
                    scanned=scanned,
                    rules=rules,
                    watch=watch,
                    receipts=receipts,
                    expected=expected,
                    now=now,
                )
            )
        except DepositNotStored as exc:
            # Rolled back, cursor unmoved: the scanner of this chain stops here until ops fix the
            # cause, and every tick counts one more occurrence of the alert.
            monitoring_services.alert_raise_alone(
                severity=Severity.CRITICAL,
                kind="DEPOSIT_NOT_STORED",
                subject=f"chain {chain_id}",
                message=str(exc),
                now=now,
            )
            return ScanResult(chain_id=chain_id, height=cursor.height, tip=tip, error=str(exc))
    if forked:
        current = ScanCursor.objects.get(chain_id=chain_id)
        if (current.height, current.version) != expected:
            raise CursorMoved(f"cursor of {chain_id} moved")
        return _reorg_resolve(adapter=adapter, cursor=current, tip=tip, now=now)
    return ScanResult(
        chain_id=chain_id,
        blocks=len(blocks),
        deposits=sum(len(candidates) for _, candidates in scanned),
        height=expected[0],
        tip=tip,
        error=error,
    )


def _late_rescan(*, chain_id: str, adapter: ChainAdapter, from_height: int, now: datetime) -> str | None:
    """
    Read again, SCAN_BATCH_BLOCKS at a time, the blocks an address the watch list learned late
    may have been paid in (see watchlist); the rest is asked for again. Returns an error, if any.
    """
    cursor_height = ScanCursor.objects.get(chain_id=chain_id).height
    last = min(cursor_height, from_height + settings.SCAN_BATCH_BLOCKS - 1)
    try:
        rescan = deposits_rescan_range(
            chain_id=chain_id, from_height=from_height, to_height=last, now=now, adapter=adapter
        )
    except BaseException:
        watchlist.watchlist_rescan_request(chain_id=chain_id, from_height=from_height)
        raise
    done_to = from_height + rescan.blocks - 1
    if done_to < cursor_height:
        watchlist.watchlist_rescan_request(chain_id=chain_id, from_height=done_to + 1)
    if rescan.deposits:
        logger.warning(
            "rescan of %s %s..%s found %s missed deposit(s)", chain_id, from_height, done_to, rescan.deposits
        )
    return rescan.error


@transaction.atomic(durable=True)
def _blocks_commit(
    *,
    chain_id: str,
    scanned: list[tuple[Block, list[matching.Candidate]]],
    rules: matching.CoinRules,
    watch: matching.Watch,
    expected: tuple[int, int],
    now: datetime,
    receipts: Sequence[treasury.ReceiptCandidate] = (),
) -> tuple[int, int]:
    """
    Advance the cursor over consecutive blocks by one compare-and-set and record their deposits.

    All or nothing: the cursor, the blocks' hashes, their deposits and what they did to the
    exchange's UTXO set commit together.
    """
    height, version = expected
    first, last = scanned[0][0].number, scanned[-1][0].number
    moved = ScanCursor.objects.filter(chain_id=chain_id, height=height, version=version).update(
        height=last, version=version + 1
    )
    if not moved:
        raise CursorMoved(f"cursor of {chain_id} is no longer at {height}")
    _step("scan.cursor_set")
    # Rows above the cursor are left-overs of a branch a reorg dropped: replace them.
    RecentBlock.objects.filter(chain_id=chain_id, height__gte=first).delete()
    rows_insert(
        [
            RecentBlock(chain_id=chain_id, height=block.number, hash=block.hash, parent_hash=block.parent_hash)
            for block, _ in scanned
        ]
    )
    RecentBlock.objects.filter(chain_id=chain_id, height__lte=last - settings.SCAN_RECENT_BLOCKS).delete()
    # A live deposit at one of these heights from another block hash sits in a block that is gone.
    hashes = {block.number: block.hash for block, _ in scanned}
    live = _records_lock(
        RechargeRecord.objects.filter(
            coin_id__in=rules.coin_ids, block_number__gte=first, block_number__lte=last, status__in=LIVE_STATUSES
        )
    )
    for record in live:
        if record.block_hash != hashes[record.block_number]:
            _record_orphan(record=record, now=now)
    _records_upsert(scanned=scanned, now=now)
    utxos_services.utxos_blocks_record(chain_id=chain_id, blocks=[block for block, _ in scanned], watch=watch)
    # After the UTXO set: on BTC, what spends our outputs is ours, not a receipt.
    treasury.receipts_record(
        chain_id=chain_id, coin_ids=rules.coin_ids, blocks=[block for block, _ in scanned], candidates=receipts
    )
    _step("scan.block_written")
    return last, version + 1


def _records_lock(rows: QuerySet[RechargeRecord]) -> list[RechargeRecord]:
    """
    Lock the deposits a filter selects, in primary-key order, and return those still selected.

    Locking through a secondary index (block_number, tx_hash) takes the rows in that index's order;
    deposits_settle locks by id, and a revived deposit's id is out of block order, so the two could
    deadlock. The ids are read without a lock, then locked by primary key, then the filter is
    applied again to the locked rows (a row may have changed in between).
    """
    ids = sorted(rows.values_list("id", flat=True))
    locked: list[RechargeRecord] = []
    for chunk in range(0, len(ids), UPSERT_CHUNK):
        part = ids[chunk : chunk + UPSERT_CHUNK]
        locked += RechargeRecord.objects.filter(id__in=part).order_by("id").select_for_update()
    still = set(rows.filter(id__in=[r.id for r in locked]).values_list("id", flat=True)) if locked else set()
    return [record for record in locked if record.id in still]


def _records_upsert(*, scanned: list[tuple[Block, list[matching.Candidate]]], now: datetime) -> int:
    """Create the blocks' deposits, or revive orphaned ones found again; never a second row per key."""
    wanted = [(block, candidate) for block, candidates in scanned for candidate in candidates]
    if not wanted:
        return 0
    coins = {c.coin_id: c for c in CoinConfig.objects.filter(coin_id__in={c.coin_id for _, c in wanted})}
    tx_hashes = sorted({c.transfer.tx_hash for _, c in wanted})
    existing: dict[tuple[str, str, int], RechargeRecord] = {}
    for chunk in range(0, len(tx_hashes), UPSERT_CHUNK):
        for record in _records_lock(
            RechargeRecord.objects.filter(coin_id__in=coins.keys(), tx_hash__in=tx_hashes[chunk : chunk + UPSERT_CHUNK])
        ):
            existing[(record.coin_id, record.tx_hash, record.log_index)] = record
    new = []
    for block, candidate in wanted:
        transfer = candidate.transfer
        coin = coins[candidate.coin_id]
        block_time = datetime.fromtimestamp(block.timestamp, tz=UTC)
        amount = coins_selectors.amount_from_base_units(coin=coin, base_units=transfer.amount_base_units)
        if amount >= coins_selectors.AMOUNT_CEILING:
            logger.warning("deposit ignored on %s: amount too large (tx %s)", coin.coin_id, transfer.tx_hash)
            continue
        record = existing.get((coin.coin_id, transfer.tx_hash, transfer.index))
        if record is None:
            new.append(
                RechargeRecord(
                    recharge_no=business_no(prefix="R", now=now),
                    user_id=candidate.user_id,
                    coin=coin,
                    coin_name=coin.coin_name,
                    tx_hash=transfer.tx_hash,
                    log_index=transfer.index,
                    from_address=transfer.from_address[:255],
                    to_address=candidate.address,
                    amount=amount,
                    required_confirmations=coin.required_confirmations,
                    status=RechargeStatus.PENDING,
                    block_number=block.number,
                    block_hash=block.hash,
                    block_time=block_time,
                    confirmations=1,
                )
            )
        elif record.status == RechargeStatus.REORGED:
            # Re-mined on the new branch: the same key again, credited under a new generation.
            record.status = RechargeStatus.PENDING
            record.generation += 1
            record.block_number, record.block_hash, record.block_time = block.number, block.hash, block_time
            record.confirmations, record.confirm_time = 1, None
            changed = _record_content_set(record=record, candidate=candidate, amount=amount)
            record.save(
                update_fields=[
                    "status",
                    "generation",
                    "block_number",
                    "block_hash",
                    "block_time",
                    "confirmations",
                    "confirm_time",
                    "update_time",
                    *changed,
                ]
            )
            logger.info("deposit %s found again at block %s after a reorg", record.recharge_no, block.number)
        elif record.block_hash != block.hash:
            if record.status == RechargeStatus.PENDING:
                record.block_number, record.block_hash, record.block_time = block.number, block.hash, block_time
                changed = _record_content_set(record=record, candidate=candidate, amount=amount)
                record.save(update_fields=["block_number", "block_hash", "block_time", "update_time", *changed])
            else:
                # Settled in a block we still believe in, yet seen in another: never credit twice.
                logger.warning("deposit %s seen in two blocks; left as is", record.recharge_no)
    inserted = 0
    for start in range(0, len(new), UPSERT_CHUNK):
        inserted += rows_insert_ignoring_conflicts(new[start : start + UPSERT_CHUNK])
    if inserted != len(new):  # some were skipped: another scanner's rows, or rejected ones
        _records_check_stored(new)
    return len(new)


def _record_content_set(*, record: RechargeRecord, candidate: matching.Candidate, amount: Decimal) -> list[str]:
    """
    Make a deposit that is not credited (pending, or orphaned with its crediting reversed) say what
    its key carries in the block it is now in; return the fields changed.

    The same key in another block may carry another transfer: a transaction re-executed after a
    reorg can move other amounts to other addresses (ether a contract pays, chains.evm_trace), and
    an ERC20 log index counts from the start of the block, so the same transaction at another
    place in a block gives its logs other indexes. Keeping the orphaned row's amount or owner
    would credit what did not arrive, to whom it was not paid.
    """
    wanted = {
        "user_id": candidate.user_id,
        "to_address": candidate.address,
        "from_address": candidate.transfer.from_address[:255],
        "amount": amount,
    }
    changed = [name for name, value in wanted.items() if getattr(record, name) != value]
    for name in changed:
        setattr(record, name, wanted[name])
    if changed:
        logger.warning(
            "deposit %s: its key carries another transfer in block %s (%s changed)",
            record.recharge_no,
            record.block_number,
            ", ".join(changed),
        )
    return ["user" if name == "user_id" else name for name in changed]


def _records_check_stored(new: list[RechargeRecord]) -> None:
    """
    Raise unless every deposit just inserted exists now (its own row, or one another scanner wrote).

    rows_insert_ignoring_conflicts is INSERT IGNORE on MariaDB, which turns every error of a
    row (a foreign key, strict mode), not only the duplicate key, into a warning: such a deposit
    would be dropped while the cursor moves past its block. Raising rolls the whole batch back.
    :raises DepositNotStored: a deposit row was rejected.
    """
    if not new:
        return
    wanted = {(r.coin_id, r.tx_hash, r.log_index) for r in new}
    tx_hashes = sorted({r.tx_hash for r in new})
    found: set[tuple[str, str, int]] = set()
    for chunk in range(0, len(tx_hashes), UPSERT_CHUNK):
        found.update(
            RechargeRecord.objects.filter(
                coin_id__in={r.coin_id for r in new}, tx_hash__in=tx_hashes[chunk : chunk + UPSERT_CHUNK]
            ).values_list("coin_id", "tx_hash", "log_index")
        )
    missing = sorted(wanted - found)
    if missing:
        logger.critical("deposit rows rejected by the database, batch rolled back: %s", missing[:10])
        raise DepositNotStored(f"{len(missing)} deposit rows were rejected by the database, first {missing[0]}")


# --- reorgs --------------------------------------------------------------------------------------


def _reorg_resolve(*, adapter: ChainAdapter, cursor: ScanCursor, tip: int, now: datetime) -> ScanResult:
    """Walk back to the fork point (RPC, no transaction), then orphan and rewind in one transaction."""
    chain_id = cursor.chain_id
    stored = dict(RecentBlock.objects.filter(chain_id=chain_id).values_list("height", "hash"))
    node_hashes: dict[int, str] = {}
    fork = None
    height = min(cursor.height, tip)
    try:
        while height in stored:
            node_hashes[height] = _node_hash(adapter=adapter, height=height)
            if node_hashes[height] == stored[height]:
                fork = height
                break
            height -= 1
    except NODE_ERRORS as exc:
        error = _node_failure(chain_id=chain_id, action=f"block_hash({height})", exc=exc, now=now)
        return ScanResult(chain_id=chain_id, height=cursor.height, tip=tip, error=error)
    if fork is None:
        text = (
            f"reorg on {chain_id} deeper than the {len(stored)} stored blocks (below height {height + 1}): "
            "scanning stopped, ops must resolve"
        )
        logger.critical("%s", text)
        monitoring_services.alert_raise_alone(
            severity=Severity.CRITICAL, kind="REORG_TOO_DEEP", subject=f"chain {chain_id}", message=text, now=now
        )
        return ScanResult(chain_id=chain_id, height=cursor.height, tip=tip, error=text)
    _step("reorg.fork_found")
    orphaned = retry_on_deadlock(
        functools.partial(
            _reorg_commit,
            chain_id=chain_id,
            fork=fork,
            node_hashes=node_hashes,
            expected=(cursor.height, cursor.version),
            now=now,
        )
    )
    logger.warning(
        "reorg on %s: fork point %s, cursor was %s, %s deposits orphaned", chain_id, fork, cursor.height, orphaned
    )
    return ScanResult(chain_id=chain_id, height=fork, tip=tip, fork_point=fork)


@transaction.atomic(durable=True)
def _reorg_commit(
    *, chain_id: str, fork: int, node_hashes: dict[int, str], expected: tuple[int, int], now: datetime
) -> int:
    height, version = expected
    moved = ScanCursor.objects.filter(chain_id=chain_id, height=height, version=version).update(
        height=fork, version=version + 1
    )
    if not moved:
        raise CursorMoved(f"cursor of {chain_id} is no longer at {height}")
    RecentBlock.objects.filter(chain_id=chain_id, height__gt=fork).delete()
    utxos_services.utxos_blocks_orphan(chain_id=chain_id, above_height=fork)
    coin_ids = [c.coin_id for c in _chain_coins(chain_id=chain_id)]
    records = _records_lock(
        RechargeRecord.objects.filter(coin_id__in=coin_ids, block_number__gt=fork, status__in=LIVE_STATUSES)
    )
    orphaned = 0
    for record in records:
        if node_hashes.get(record.block_number) == record.block_hash:
            continue  # still on the node's chain
        _record_orphan(record=record, now=now)
        orphaned += 1
    treasury.receipts_orphan_above(coin_ids=coin_ids, fork=fork, node_hashes=node_hashes)
    _step("reorg.written")
    return orphaned


def unclaimed_book(*, record: RechargeRecord, coin: CoinConfig) -> None:
    """Book a deposit held below the minimum to the house (HOUSE_UNCLAIMED_DEPOSIT, UNCLAIMED), once."""
    assets_house.house_book(
        coin=coin,
        account=HouseAccount.UNCLAIMED,
        amount=record.amount,
        business_type=BusinessType.HOUSE_UNCLAIMED_DEPOSIT,
        biz_ref=record.biz_ref,
        ref_tx_hash=record.tx_hash,
        memo=f"deposit {record.recharge_no} below the minimum, credited to nobody",
    )


def _unclaimed_reverse(*, record: RechargeRecord) -> None:
    # The block that paid it is gone: so is the house's share. Its own reference, as the crediting's
    # reversal has; a deposit mined again is a new generation with a reference of its own.
    assets_house.house_book(
        coin=CoinConfig.objects.get(coin_id=record.coin_id),
        account=HouseAccount.UNCLAIMED,
        amount=-record.amount,
        business_type=BusinessType.HOUSE_UNCLAIMED_DEPOSIT,
        biz_ref=f"{record.biz_ref}-reorg",
        ref_tx_hash=record.tx_hash,
        memo=f"deposit {record.recharge_no} below the minimum, orphaned by a reorg",
    )


def _record_orphan(*, record: RechargeRecord, now: datetime) -> None:
    """
    Mark a (locked) deposit of an orphaned block REORGED; reverse its crediting if it was credited,
    and its house booking if it was held below the minimum.
    """
    credited = record.status == RechargeStatus.CONFIRMED
    if record.status == RechargeStatus.BELOW_MINIMUM:
        _unclaimed_reverse(record=record)
    record.status = RechargeStatus.REORGED
    record.save(update_fields=["status", "update_time"])
    if credited:
        shortfalls.credit_reverse(record=record, now=now)
        assets_services.outbox_enqueue(event=_recharge_event(record=record, confirmations=0, now=now))


# --- confirmations and crediting ---------------------------------------------------------------------


def deposits_confirm(*, chain_id: str, now: datetime, adapter: ChainAdapter | None = None) -> ConfirmResult:
    """
    Settle the chain's deposits that reached their coin's confirmations on a still-canonical block.

    Confirmations come from the tip the scanner stored. Canonicity is re-checked outside any
    transaction (see _canonical_hashes: usually one block_hash call), then the due deposits are
    settled in transactions of up to SETTLE_BATCH deposits of one coin each.
    """
    result = _deposits_confirm(chain_id=chain_id, now=now, adapter=adapter)
    cursor = ScanCursor.objects.filter(chain_id=chain_id).first()
    if cursor is not None:
        # Treasury receipts wait for the same confirmations on the scanner's stored chain.
        coins = {c.coin_id: c for c in _chain_coins(chain_id=chain_id)}
        treasury.receipts_book(chain_id=chain_id, coins=coins, cursor_height=cursor.height, tip=cursor.tip_height)
    return result


def _deposits_confirm(*, chain_id: str, now: datetime, adapter: ChainAdapter | None = None) -> ConfirmResult:
    cursor = ScanCursor.objects.filter(chain_id=chain_id).first()
    if cursor is None:
        return ConfirmResult(chain_id=chain_id)
    tip = cursor.tip_height
    coins = {c.coin_id: c for c in _chain_coins(chain_id=chain_id)}
    shortfalls.account_holds_close_repaid(coin_ids=list(coins), now=now)
    pending = RechargeRecord.objects.filter(coin_id__in=coins.keys(), status=RechargeStatus.PENDING)
    # Pending rows are not rewritten every tick (readers compute live confirmations from the
    # stored tip, see selectors.recharge_confirmations); a settled row stores its final count.
    rows = list(
        pending.filter(block_number__lte=cursor.height)
        .order_by("block_number", "id")
        .values_list("id", "coin_id", "block_number", "block_hash", "generation")
    )
    due = [row for row in rows if tip - row[2] + 1 >= coins[row[1]].required_confirmations]
    heights = sorted({row[2] for row in due})[: settings.SCAN_CONFIRM_MAX_HEIGHTS]
    if not heights:
        return ConfirmResult(chain_id=chain_id, waiting=len(rows))
    stored = dict(RecentBlock.objects.filter(chain_id=chain_id, height__in=heights).values_list("height", "hash"))
    try:
        adapter = adapter or adapter_for(chain_id)
        node = _canonical_hashes(adapter=adapter, chain_id=chain_id, heights=heights)
    except ADAPTER_ERRORS as exc:
        error = _node_failure(chain_id=chain_id, action="block_hash", exc=exc, now=now)
        return ConfirmResult(chain_id=chain_id, waiting=len(rows), error=error)
    _step("confirm.checked")
    waiting = len(rows) - len(due)
    # What was verified for each row: deposits_settle credits a row only if it is still this.
    settle: dict[str, dict[int, tuple[str, int]]] = {}
    for record_id, coin_id, height, block_hash, generation in due:
        if height not in node:
            waiting += 1
            continue
        if node[height] != block_hash or stored.get(height, block_hash) != block_hash:
            # The scanner will see the reorg and orphan it; never credit a block we doubt.
            logger.info("deposit %s waits: block %s of %s is no longer canonical", record_id, height, chain_id)
            waiting += 1
            continue
        settle.setdefault(coin_id, {})[record_id] = (block_hash, generation)
    counts: dict[RechargeStatus, int] = {}
    for verified in settle.values():
        ids = list(verified)
        for chunk in range(0, len(ids), SETTLE_BATCH):
            batch = {record_id: verified[record_id] for record_id in ids[chunk : chunk + SETTLE_BATCH]}
            outcomes, failed = _settle_batch(verified=batch, tip=tip, now=now)
            for outcome in outcomes.values():
                counts[outcome] = counts.get(outcome, 0) + 1
            waiting += failed
    return ConfirmResult(
        chain_id=chain_id,
        credited=counts.get(RechargeStatus.CONFIRMED, 0),
        below_minimum=counts.get(RechargeStatus.BELOW_MINIMUM, 0),
        disabled=counts.get(RechargeStatus.RECHARGE_DISABLED, 0),
        above_maximum=counts.get(RechargeStatus.ABOVE_MAXIMUM, 0),
        waiting=waiting,
    )


def _settle_batch(
    *, verified: dict[int, tuple[str, int]], tip: int, now: datetime
) -> tuple[dict[int, RechargeStatus], int]:
    """
    Settle a batch; if the ledger refuses it, settle its deposits one by one.

    One bad line (an amount finer than the coin now allows, a reference booked differently)
    rolls the whole batch back. Settling each deposit in a transaction of its own then credits
    the good ones; a deposit that fails alone stays PENDING, is logged and alerted for ops, and
    the others (and the other coins and chains) go on. Returns the outcomes and the failures.
    """
    try:
        return retry_on_deadlock(functools.partial(deposits_settle, verified=verified, tip=tip, now=now)), 0
    except SETTLE_ERRORS as exc:
        if len(verified) == 1:
            (record_id,) = verified
            _settle_failure(record_id=record_id, exc=exc, now=now)
            return {}, 1
        logger.warning("settling %s deposits failed (%s): settling them one by one", len(verified), exc)
    outcomes: dict[int, RechargeStatus] = {}
    failed = 0
    for record_id, checked in verified.items():
        try:
            outcomes.update(
                retry_on_deadlock(functools.partial(deposits_settle, verified={record_id: checked}, tip=tip, now=now))
            )
        except SETTLE_ERRORS as exc:
            _settle_failure(record_id=record_id, exc=exc, now=now)
            failed += 1
    return outcomes, failed


def _settle_failure(*, record_id: int, exc: BaseException, now: datetime) -> None:
    """Log and alert (in a transaction of its own) a deposit the ledger refused; it stays PENDING."""
    record = RechargeRecord.objects.filter(id=record_id).values_list("recharge_no", "coin_id", "amount").first()
    recharge_no, coin_id, amount = record if record is not None else (f"id {record_id}", "?", None)
    shown = "?" if amount is None else money.decimal_plain(amount)
    text = (
        f"deposit {recharge_no} ({shown} {coin_id}) could not be credited: {type(exc).__name__}: "
        f"{str(exc)[:300]}; it stays pending and is retried every tick until ops fix the cause"
    )
    logger.error("%s", text)
    monitoring_services.alert_raise_alone(
        severity=Severity.CRITICAL,
        kind="RECHARGE_SETTLE_FAILED",
        subject=f"deposit {recharge_no}",
        message=text,
        now=now,
    )


def _canonical_hashes(*, adapter: ChainAdapter, chain_id: str, heights: list[int]) -> dict[int, str]:
    """
    Return {height: hash of the node's best-chain block} for the given heights (sorted).

    The stored blocks form a hash chain (the scanner stores a block only when its parent hash is
    the stored block below it), and a block's hash commits to its parent's. So when the node's
    block at the highest height is the one stored, every stored block linked below it down to
    the lowest height is the node's too: one block_hash call instead of one per height. Heights
    outside that linked run (a pruned row, a node that disagrees) are asked one by one.
    :raises ChainError: (and other NODE_ERRORS) a node call failed.
    """
    low, top = heights[0], heights[-1]
    chain = {
        height: (block_hash, parent)
        for height, block_hash, parent in RecentBlock.objects.filter(
            chain_id=chain_id, height__gte=low, height__lte=top
        ).values_list("height", "hash", "parent_hash")
    }
    found: dict[int, str] = {}
    if top in chain and _node_hash(adapter=adapter, height=top) == chain[top][0]:
        height = top
        found[height] = chain[height][0]
        while height > low and height - 1 in chain and chain[height][1] == chain[height - 1][0]:
            height -= 1
            found[height] = chain[height][0]
    for height in heights:
        if height not in found:
            found[height] = _node_hash(adapter=adapter, height=height)
    return found


@transaction.atomic(durable=True)
def deposits_settle(*, verified: dict[int, tuple[str, int]], tip: int, now: datetime) -> dict[int, RechargeStatus]:
    """
    Credit the given deposits (or record why not), each once, in one transaction.

    `verified` maps each deposit's id to the (block_hash, generation) the caller found canonical
    on the node. The rows are locked in id order; a row is skipped unless, under the lock, it is
    still PENDING in that same block and generation with at least its coin's confirmations at
    `tip`: the scanner may have orphaned it, revived it in another block or moved it since the
    check, and such a row waits for the next check. Credits of one coin are posted with one
    balance_credit_batch call. Returns {record_id: new status} of the deposits settled here.
    """
    # No join under the lock: on MariaDB it would lock the coin_config rows as well.
    locked = list(RechargeRecord.objects.select_for_update().filter(id__in=list(verified)).order_by("id"))
    coins = {c.coin_id: c for c in CoinConfig.objects.filter(coin_id__in={r.coin_id for r in locked})}
    records = []
    for record in locked:
        record.coin = coins[record.coin_id]
        if record.status != RechargeStatus.PENDING:
            continue
        if (record.block_hash, record.generation) != verified[record.id] or record.block_number is None:
            logger.info("deposit %s waits: its block changed since it was checked", record.recharge_no)
            continue
        if tip - record.block_number + 1 < record.coin.required_confirmations:
            logger.info(
                "deposit %s waits: fewer than %s confirmations", record.recharge_no, record.coin.required_confirmations
            )
            continue
        records.append(record)
    credited: dict[str, list[RechargeRecord]] = {}
    for record in records:
        coin = record.coin
        record.confirmations = max(tip - (record.block_number or tip) + 1, 0)
        if not coin.is_enabled or coin.recharge_enabled != Switch.ENABLED:
            record.status = RechargeStatus.RECHARGE_DISABLED
            monitoring_services.alert_raise(
                severity=Severity.WARNING,
                kind="RECHARGE_DISABLED",
                subject=f"coin {coin.coin_id}",
                message=f"deposit {record.recharge_no} "
                f"({coins_selectors.amount_format(coin=coin, amount=record.amount)}) arrived while recharge is "
                "disabled: recorded, not credited",
                now=now,
            )
        elif record.amount < coin.min_recharge_amount:
            record.status = RechargeStatus.BELOW_MINIMUM
            # On the exchange's address, credited to nobody: the house holds it (UNCLAIMED).
            unclaimed_book(record=record, coin=coin)
            logger.info("deposit %s below the minimum of %s: not credited", record.recharge_no, coin.coin_id)
        elif record.amount > coin.max_recharge_amount:
            record.status = RechargeStatus.ABOVE_MAXIMUM
            monitoring_services.alert_raise(
                severity=Severity.WARNING,
                kind="RECHARGE_ABOVE_MAXIMUM",
                subject=f"coin {coin.coin_id}",
                message=f"deposit {record.recharge_no} of user {record.user_id} "
                f"({coins_selectors.amount_format(coin=coin, amount=record.amount)}) is above the maximum of "
                f"{coins_selectors.amount_format(coin=coin, amount=coin.max_recharge_amount)}: recorded, not credited; "
                "ops review it",
                now=now,
            )
        else:
            record.status = RechargeStatus.CONFIRMED
            record.confirm_time = now
            credited.setdefault(coin.coin_id, []).append(record)
    _step("settle.locked")
    for group in credited.values():
        batch = assets_services.balance_credit_batch(
            coin=group[0].coin,
            business_type=BusinessType.RECHARGE,
            credits=[
                assets_services.Credit(
                    user_id=r.user_id,
                    amount=r.amount,
                    biz_ref=r.biz_ref,
                    ref_tx_hash=r.tx_hash,
                    memo=f"deposit {r.recharge_no}",
                )
                for r in group
            ],
        )
        # Only users whose debt these credits repaid to zero: no query for anyone else.
        shortfalls.holds_close_repaid(user_ids=batch.debt_cleared_user_ids, coin_id=group[0].coin_id, now=now)
    _step("settle.credited")
    assets_services.outbox_enqueue_many(
        events_to_send=[
            _recharge_event(record=record, confirmations=record.confirmations, now=now)
            for group in credited.values()
            for record in group
        ]
    )
    # One UPDATE per outcome (bulk_update's CASE per row costs more than the rest of the batch);
    # the confirmations expression is the one computed above for each row.
    by_status: dict[int, list[int]] = {}
    for record in records:
        by_status.setdefault(record.status, []).append(record.id)
    for new_status, ids in by_status.items():
        RechargeRecord.objects.filter(id__in=ids).update(
            status=new_status,
            confirmations=Greatest(Value(tip + 1) - Coalesce(F("block_number"), Value(tip)), Value(0)),
            confirm_time=now if new_status == RechargeStatus.CONFIRMED else None,
            update_time=timezone.now(),
        )
    _step("settle.written")
    return {record.id: RechargeStatus(record.status) for record in records}


def _recharge_event(*, record: RechargeRecord, confirmations: int, now: datetime) -> assets_events.Event:
    """The WALLET_RECHARGE message of a deposit's new status."""
    return assets_events.wallet_recharge(
        recharge_no=record.recharge_no,
        user_id=record.user_id,
        coin_id=record.coin_id,
        amount=record.amount,
        tx_hash=record.tx_hash,
        status=int(record.status),
        confirmations=confirmations,
        at=now,
    )


# --- ops ------------------------------------------------------------------------------------------


# Blocks one rescan call may read: a web request or a command must not read a chain's history.
RESCAN_MAX_BLOCKS = 10_000


def deposits_rescan_range(
    *, chain_id: str, from_height: int, to_height: int, now: datetime, adapter: ChainAdapter | None = None
) -> ScanResult:
    """
    Read blocks from_height..to_height again and record any deposit missing (idempotent).

    Only blocks the scanner already passed are rescanned, and only while the node still agrees
    with the stored hash; the cursor does not move. Useful after an address was watched late.
    """
    if to_height - from_height >= RESCAN_MAX_BLOCKS:
        raise WalletError(f"A rescan reads at most {RESCAN_MAX_BLOCKS} blocks at once.", field="to_height")
    adapter = adapter or adapter_for(chain_id)
    cursor = ScanCursor.objects.filter(chain_id=chain_id).first()
    if cursor is None or from_height > to_height:
        return ScanResult(chain_id=chain_id)
    last = min(to_height, cursor.height)
    deposits = blocks = 0
    try:
        rules = _coin_rules(chain_id=chain_id, adapter=adapter, now=now)
    except coins_selectors.CoinMisconfigured as exc:
        return ScanResult(chain_id=chain_id, error=exc.message)
    watch, _version = watchlist.watchlist_get(chain_id=chain_id, adapter=adapter)
    for height in range(max(from_height, 0), last + 1):
        try:
            block = _block_checked(block=adapter.block(height), height=height)
            candidates, _ignored = matching.transfers_match(
                transfers=block.transfers, watch=watch, rules=rules, contract_key=adapter.match_key
            )
        except NODE_ERRORS as exc:
            error = _node_failure(chain_id=chain_id, action=f"rescan block({height})", exc=exc, now=now)
            return ScanResult(chain_id=chain_id, blocks=blocks, deposits=deposits, error=error)
        deposits += retry_on_deadlock(
            functools.partial(
                _rescan_commit, chain_id=chain_id, block=block, candidates=candidates, watch=watch, now=now
            )
        )
        blocks += 1
    return ScanResult(chain_id=chain_id, blocks=blocks, deposits=deposits, height=last)


@transaction.atomic(durable=True)
def _rescan_commit(
    *, chain_id: str, block: Block, candidates: list[matching.Candidate], watch: matching.Watch, now: datetime
) -> int:
    # Lock the cursor so a reorg cannot rewind under us, then trust only a block the scanner saw.
    cursor = ScanCursor.objects.select_for_update().get(chain_id=chain_id)
    stored = RecentBlock.objects.filter(chain_id=chain_id, height=block.number).first()
    if block.number > cursor.height or (stored is not None and stored.hash != block.hash):
        logger.info("rescan of %s skips block %s: not the block the scanner holds", chain_id, block.number)
        return 0
    utxos_services.utxos_blocks_record(chain_id=chain_id, blocks=[block], watch=watch)
    return _records_upsert(scanned=[(block, candidates)], now=now)


# Deposits recorded but held back by a coin rule, which ops may credit after a review.
RELEASABLE_STATUSES = (RechargeStatus.ABOVE_MAXIMUM, RechargeStatus.RECHARGE_DISABLED)


def deposit_release(
    *, record_id: int, operator: str, remark: str, now: datetime, adapter: ChainAdapter | None = None
) -> RechargeRecord:
    """
    Credit a deposit held above the coin's maximum or while recharge was disabled, after review.

    Its block is checked on the node first, as the confirmation job checks before crediting (the
    scanner may be behind a reorg), then, under the row lock, the deposit must still be held in
    that block and generation. Credited once: the ledger's reference is the deposit's own, and a
    later reorg reverses it like any credited deposit. Never below the coin's minimum deposit. The
    flow's memo names the operator and the remark; the admin keeps the full remark in its history.
    :raises WalletError: no remark or operator, or the node cannot confirm the block now.
    :raises Conflict: not held (pending, credited, released, orphaned), moved, or below the minimum.
    """
    remark = remark.strip()
    if not remark:
        raise WalletError("A release needs a remark saying why the deposit may be credited.", field="remark")
    if not operator:
        raise WalletError("A release needs the operator's name.", field="operator")
    record = RechargeRecord.objects.select_related("coin").get(id=record_id)
    if record.status not in RELEASABLE_STATUSES or record.block_number is None:
        raise Conflict(
            f"Deposit {record.recharge_no} is {RechargeStatus(record.status).label}: only deposits held above "
            "the maximum or while recharge was disabled can be released."
        )
    try:
        adapter = adapter or adapter_for(record.coin.chain_id)
        canonical = _node_hash(adapter=adapter, height=record.block_number) == record.block_hash
    except ADAPTER_ERRORS as exc:
        raise WalletError(f"The node could not confirm the deposit's block now: {type(exc).__name__}.") from None
    if not canonical:
        raise Conflict(f"Deposit {record.recharge_no}'s block is no longer on the chain: the scanner will orphan it.")
    return _release_commit(
        record_id=record_id, verified=(record.block_hash, record.generation), operator=operator, remark=remark, now=now
    )


@transaction.atomic(durable=True)
def _release_commit(
    *, record_id: int, verified: tuple[str | None, int], operator: str, remark: str, now: datetime
) -> RechargeRecord:
    record = RechargeRecord.objects.select_for_update().get(id=record_id)
    if record.status not in RELEASABLE_STATUSES:
        raise Conflict(
            f"Deposit {record.recharge_no} is {RechargeStatus(record.status).label}: only deposits held above "
            "the maximum or while recharge was disabled can be released."
        )
    if (record.block_hash, record.generation) != verified:
        raise Conflict(f"Deposit {record.recharge_no} moved to another block since it was checked: review it again.")
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    if record.amount < coin.min_recharge_amount:
        raise Conflict(
            f"Deposit {record.recharge_no} is below the minimum deposit of "
            f"{coins_selectors.amount_format(coin=coin, amount=coin.min_recharge_amount)}."
        )
    held = RechargeStatus(record.status).label
    assets_services.balance_credit(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.RECHARGE,
        biz_ref=record.biz_ref,
        ref_tx_hash=record.tx_hash,
        memo=f"deposit {record.recharge_no} released by {operator}: {remark}"[:255],
    )
    if assets_selectors.debts_open(user_id=record.user_id).get(coin.coin_id, 0) == 0:
        shortfalls.holds_close_repaid(user_ids={record.user_id}, coin_id=coin.coin_id, now=now)
    record.status = RechargeStatus.CONFIRMED
    record.confirm_time = now
    record.save(update_fields=["status", "confirm_time", "update_time"])
    assets_services.outbox_enqueue(event=_recharge_event(record=record, confirmations=record.confirmations, now=now))
    logger.info("deposit %s (%s) released and credited by %s", record.recharge_no, held, operator)
    return record


# --- a dev chain that came back new ------------------------------------------------------------


@transaction.atomic(durable=True)
@transaction.atomic(savepoint=False)
def scan_state_forget(*, chain_id: str, now: datetime) -> tuple[int, int]:
    """
    Forget what the scanner knew of a chain that was replaced by a new one (a dev chain started empty).

    Drops the chain's cursor and recent block hashes, so the next tick starts afresh at
    SCAN_START_HEIGHTS (or the tip) instead of stopping on a reorg deeper than every stored block,
    and marks its pending deposits REORGED: their blocks are gone. Credited deposits stay as they
    are in the ledger. Returns (recent blocks dropped, pending deposits orphaned).
    """
    coin_ids = [c.coin_id for c in _chain_coins(chain_id=chain_id)]
    blocks, _ = RecentBlock.objects.filter(chain_id=chain_id).delete()
    ScanCursor.objects.filter(chain_id=chain_id).delete()
    orphaned = RechargeRecord.objects.filter(coin_id__in=coin_ids, status=RechargeStatus.PENDING).update(
        status=RechargeStatus.REORGED, update_time=now
    )
    treasury.receipts_forget(coin_ids=coin_ids)
    # The old chain's outputs are gone with it: no payout may pick them.
    utxos_services.utxos_blocks_orphan(chain_id=chain_id, above_height=-1)
    logger.warning(
        "scan state of %s forgotten (new dev chain): %s recent blocks dropped, %s pending deposits orphaned",
        chain_id,
        blocks,
        orphaned,
    )
    return blocks, orphaned
