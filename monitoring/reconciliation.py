"""
Reconciliation: per coin, the ledger against itself and against the chain.

(a) The ledger against itself. Every user balance row of the coin equals the sums of its flows
(available, frozen, debt) and every house balance the sum of its house flows. A run reads only the
users with new flows (a flow id above the last one checked, or created shortly before the previous
run started: a transaction that committed late with a lower id); once every
RECONCILE_FULL_EVERY_SECONDS it reads every flow of the coin.

(b) The ledger against the chain:

    users + house == on_chain - inbound + outbound - settled_ahead

- users: Σ (available + frozen - debt) of every user; house: Σ house balances (signed).
- on_chain: what every exchange address holds in the coin — deposit addresses, hot and gas
  stations, change, cold — at one block height: BTC from the UTXO set at the scanner's height;
  ETH from the node at one block number (reserves.services.chain_read); TRON, whose API answers for
  the tip only, between two reads of the tip with no transfer to or from an exchange address in
  the blocks between them.
- inbound, on chain and not yet in the ledger: deposits waiting for their confirmations; deposits
  held for review (above the maximum, recharge disabled); treasury receipts not yet booked; on an
  account chain whose node is ahead of the scanner, transfers from outside to an exchange address
  in the blocks the scanner has not read yet (read here).
- outbound, gone from the chain and still in the ledger: for each open payout with a transaction
  mined at or below the height, what it pays its recipients (unless it reverted) and the network
  fee it paid (in the chain's own coin; every mined transaction of the payout, a CPFP child too);
  the network fee of each sweep, gas top-up and treasury transfer mined at or below the height
  whose fee is not booked yet (booked at confirmation; its amount stays on exchange addresses).
- settled_ahead, gone from the ledger and still on chain at the height: payouts the ledger has
  settled whose transaction is in a later block (the payout job may read a newer tip); the booked
  fees of sweeps, top-ups and treasury transfers mined in a later block.

difference = ledger - expected; positive is a shortfall on chain, negative a surplus. A ledger
mismatch, or a difference beyond the coin's tolerance (RECONCILE_TOLERANCES, default 0), raises
one critical RECONCILIATION_MISMATCH alert with the figures (repeats counted on it) and trips
the coin's circuit breaker (source reconciliation). A balanced run resolves the alert; the breaker
stays tripped until two people clear it. Every run is stored (monitoring_reconciliation), also the
ones that could not read the chain (status NOT_RUN, with the reason).

Network I/O happens outside any transaction: the ledger is read first in one REPEATABLE READ
snapshot, then the chain.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from addresses.models import AddressType
from assets import selectors as assets_selectors
from chains import registry as chains_registry
from chains.base import ChainAdapter, ChainError
from chains.evm import EvmAdapter
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from controls import breakers as controls_breakers
from controls.models import BreakerSource
from monitoring import services as monitoring_services
from monitoring.models import ReconciliationRun, ReconciliationStatus, Severity
from recharges import selectors as recharges_selectors
from reserves import services as reserves_services
from sweeps import selectors as sweeps_selectors
from treasury import selectors as treasury_selectors
from utxos import selectors as utxos_selectors
from wallet_project.money import exact
from withdrawals import selectors as withdrawals_selectors

logger = logging.getLogger(__name__)

ALERT_KIND = "RECONCILIATION_MISMATCH"
NODE_ERRORS: tuple[type[Exception], ...] = (
    ChainError,
    reserves_services.ReservesError,
    OSError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
)
# A CPFP child pays a fee for its parent and moves nothing else out of the exchange.
CPFP_CHILD = "CPFP_CHILD"


def alert_subject(coin_id: str) -> str:
    return f"coin {coin_id}"


@dataclass
class _Snapshot:
    users: Decimal = Decimal(0)
    house: Decimal = Decimal(0)
    flows_checked: int = 0
    last_flow_id: int = 0
    mismatches: list[dict[str, object]] = field(default_factory=list)
    scan_height: int | None = None
    deposits: dict[str, Decimal] = field(default_factory=dict)
    rows: list[reserves_services.AddressReading] = field(default_factory=list)
    btc_holdings: dict[str, int] = field(default_factory=dict)
    open_payouts: list[withdrawals_selectors.PayoutInFlight] = field(default_factory=list)
    settled: list[withdrawals_selectors.PayoutInFlight] = field(default_factory=list)
    # Sweeps, gas top-ups and treasury transfers: (what, tx_hash, stored fee, block); the native coin only.
    fees_open: list[sweeps_selectors.FeeTx] = field(default_factory=list)
    fees_settled: list[sweeps_selectors.FeeTx] = field(default_factory=list)


# SQLite (the embedded demo) keeps 15 significant digits of a decimal (assets.selectors.stored_equal):
# there an 18-decimal coin's ledger total may sit a few units of the 13th digit off the chain's.
SQLITE_TOLERANCE = Decimal("1e-9")


def _tolerance(coin: CoinConfig) -> Decimal:
    configured = settings.RECONCILE_TOLERANCES.get(coin.coin_id, Decimal(0))
    if connection.vendor == "sqlite":
        return max(configured, SQLITE_TOLERANCE)
    return configured


def _full_due(*, coin_id: str, now: datetime) -> tuple[bool, ReconciliationRun | None]:
    # The ledger is checked by every run, also one that could not read the chain.
    previous = ReconciliationRun.objects.filter(coin_id=coin_id)
    last = previous.order_by("-id").first()
    last_full = previous.filter(full=True).order_by("-id").values_list("started_at", flat=True).first()
    due = (
        last is None or last_full is None or now - last_full >= timedelta(seconds=settings.RECONCILE_FULL_EVERY_SECONDS)
    )
    return due, last


def _snapshot(*, coin: CoinConfig, full: bool, previous: ReconciliationRun | None) -> _Snapshot:
    read = _Snapshot()
    with reserves_services.consistent_read():
        read.users = assets_selectors.users_total(coin_id=coin.coin_id)
        read.house = assets_selectors.house_total(coin_id=coin.coin_id)
        read.last_flow_id = assets_selectors.flow_id_max()
        users = None
        if not full and previous is not None:
            since = previous.started_at - timedelta(seconds=settings.RECONCILE_LATE_FLOW_SECONDS)
            users = assets_selectors.flow_users_since(coin_id=coin.coin_id, after_id=previous.last_flow_id, since=since)
        flows, mismatches = assets_selectors.ledger_check(coin_id=coin.coin_id, user_ids=users)
        house_flows, house_mismatches = assets_selectors.house_check(coin_id=coin.coin_id)
        read.flows_checked = flows + house_flows
        read.mismatches = mismatches + house_mismatches
        read.scan_height = recharges_selectors.scan_height(chain_id=coin.chain_id)
        if read.scan_height is None:
            return read
        read.deposits = recharges_selectors.deposits_in_flight(coin_id=coin.coin_id, height=read.scan_height)
        read.rows = reserves_services.address_rows(coin.chain_id)
        if utxos_selectors.tracks(chain_id=coin.chain_id):
            holdings = utxos_selectors.utxo_holdings(tip_height=read.scan_height)
            read.btc_holdings = {kind.name.lower(): balance.total_sats for kind, balance in holdings.items()}
        read.open_payouts = withdrawals_selectors.payouts_open(chain_id=coin.chain_id)
        read.settled = withdrawals_selectors.payouts_settled_above(chain_id=coin.chain_id, height=read.scan_height)
        if coins_selectors.coin_is_native(coin=coin):
            read.fees_open = sweeps_selectors.fees_unbooked(chain_id=coin.chain_id) + treasury_selectors.fees_unbooked(
                chain_id=coin.chain_id
            )
            read.fees_settled = sweeps_selectors.fees_booked_above(
                chain_id=coin.chain_id, height=read.scan_height
            ) + treasury_selectors.fees_booked_above(chain_id=coin.chain_id, height=read.scan_height)
    return read


@dataclass
class _Chain:
    height: int
    block_hash: str = ""
    on_chain: Decimal = Decimal(0)
    by_kind: dict[str, str] = field(default_factory=dict)
    gap_inbound: Decimal = Decimal(0)
    outbound: Decimal = Decimal(0)
    settled_ahead: Decimal = Decimal(0)
    items: list[str] = field(default_factory=list)


def _amount(coin: CoinConfig, base_units: int) -> Decimal:
    return coins_selectors.amount_from_base_units(coin=coin, base_units=base_units)


def _coin_key(coin: CoinConfig, adapter: ChainAdapter) -> str | None:
    """The contract key a transfer of this coin carries (None: the native coin)."""
    if coins_selectors.coin_is_native(coin=coin) or not coin.contract_address:
        return None
    return adapter.match_key(coin.contract_address)


def _chain_read(*, coin: CoinConfig, read: _Snapshot, adapter: ChainAdapter | None) -> _Chain:
    """:raises NODE_ERRORS: the node failed or kept moving; ReservesError: the scanner is too far behind."""
    assert read.scan_height is not None
    if utxos_selectors.tracks(chain_id=coin.chain_id):
        sats = sum(read.btc_holdings.values())
        chain = _Chain(height=read.scan_height, on_chain=_amount(coin, sats))
        chain.by_kind = {kind: str(_amount(coin, value)) for kind, value in read.btc_holdings.items()}
        needed = read.open_payouts or read.settled or read.fees_open or read.fees_settled
        adapter = adapter or (chains_registry.adapter_for(coin.chain_id) if needed else None)
    else:
        adapter = adapter or chains_registry.adapter_for(coin.chain_id)
        if isinstance(adapter, EvmAdapter):
            reserves_services.chain_read(adapter=adapter, coins=[coin], rows=read.rows)  # at one block number
        else:
            _tip_read(adapter=adapter, coin=coin, rows=read.rows)
        height = read.rows[0].height if read.rows else adapter.tip_height()
        chain = _Chain(height=height, block_hash=read.rows[0].block_hash if read.rows else "")
        by_kind: dict[str, int] = {}
        for row in read.rows:
            units = row.balances.get(coin.coin_id, 0)
            kind = AddressType(row.address_type).name.lower()
            by_kind[kind] = by_kind.get(kind, 0) + units
        chain.on_chain = _amount(coin, sum(by_kind.values()))
        chain.by_kind = {kind: str(_amount(coin, units)) for kind, units in by_kind.items()}
        if chain.height < read.scan_height:
            raise reserves_services.ReservesError(
                f"the node's tip {chain.height} is below the scanner's height {read.scan_height}"
            )
        if chain.height - read.scan_height > settings.RECONCILE_MAX_GAP_BLOCKS:
            raise reserves_services.ReservesError(
                f"the scanner ({read.scan_height}) is more than {settings.RECONCILE_MAX_GAP_BLOCKS} blocks behind "
                f"the node ({chain.height})"
            )
        if chain.height > read.scan_height:
            _gap_read(coin=coin, read=read, adapter=adapter, chain=chain)
    if adapter is not None:
        _payouts_read(coin=coin, read=read, adapter=adapter, chain=chain)
        _fees_read(coin=coin, read=read, adapter=adapter, chain=chain)
    return chain


def _tip_read(*, adapter: ChainAdapter, coin: CoinConfig, rows: list[reserves_services.AddressReading]) -> None:
    """
    Read every address's balance on a chain that answers only for its tip (TRON), as of one block.

    The tip is read before and after the balances. If it moved, the balances are still those of
    the later block when none of the blocks in between moved anything to or from an exchange
    address (every transfer of those blocks is read): nothing the balances depend on changed.
    Otherwise read again.
    :raises ReservesError: every attempt saw the exchange's addresses move while they were read.
    """
    keys = {adapter.match_key(row.address) for row in rows}
    token = None if _coin_key(coin, adapter) is None else coin.contract_address
    for _ in range(reserves_services.CHAIN_READ_ATTEMPTS):
        before = adapter.tip_height()
        balances = [adapter.balance(row.address, token) for row in rows]
        after = adapter.tip_height()
        quiet = after == before or not any(
            transfer.match_key in keys or _key_or_none(adapter, transfer.from_address) in keys
            for block in adapter.blocks(before + 1, after)
            for transfer in block.transfers
        )
        if quiet:
            block_hash = adapter.block_hash(after)
            for row, units in zip(rows, balances, strict=True):
                row.height, row.block_hash = after, block_hash
                row.balances = {coin.coin_id: units} if units else {}
            return
    raise reserves_services.ReservesError(
        f"{adapter.chain_id}: the exchange's addresses kept moving while they were read "
        f"({reserves_services.CHAIN_READ_ATTEMPTS} tries)"
    )


def _key_or_none(adapter: ChainAdapter, address: str) -> str | None:
    try:
        return adapter.match_key(address) if address else None
    except (ChainError, ValueError, TypeError):
        return None


def _gap_read(*, coin: CoinConfig, read: _Snapshot, adapter: ChainAdapter, chain: _Chain) -> None:
    """Transfers from outside to an exchange address in the blocks above the scanner's height: inbound."""
    assert read.scan_height is not None
    keys = {adapter.match_key(row.address) for row in read.rows}
    contract = _coin_key(coin, adapter)
    for block in adapter.blocks(read.scan_height + 1, chain.height, watched=keys):
        for transfer in block.transfers:
            if transfer.match_key not in keys or not transfer.success or transfer.amount_base_units <= 0:
                continue
            if (transfer.contract is None) != (contract is None):
                continue
            if contract is not None and adapter.match_key(transfer.contract or "") != contract:
                continue
            try:
                sender = adapter.match_key(transfer.from_address) if transfer.from_address else ""
            except (ChainError, ValueError, TypeError):
                sender = ""
            if sender in keys:
                continue  # between exchange addresses: nothing arrived from outside
            amount = _amount(coin, transfer.amount_base_units)
            with exact():
                chain.gap_inbound += amount
            chain.items.append(f"unscanned block {block.number}: {transfer.tx_hash} +{amount}")


def _payouts_read(*, coin: CoinConfig, read: _Snapshot, adapter: ChainAdapter, chain: _Chain) -> None:
    native = coins_selectors.coin_is_native(coin=coin)
    for payout in read.open_payouts:
        settled_tx = False
        for tx_hash, kind, stored_fee, _ in payout.txs:
            status = adapter.tx_status(tx_hash)
            if status.block_number is None or status.block_number > chain.height:
                continue
            if kind != CPFP_CHILD and not settled_tx:
                settled_tx = True
                if payout.coin_id == coin.coin_id and status.success:
                    with exact():
                        chain.outbound += payout.paid
                    chain.items.append(f"payout {payout.payout_id} mined, not settled: {tx_hash} -{payout.paid}")
            if native:
                fee = _amount(coin, status.fee) if status.fee is not None else (stored_fee or Decimal(0))
                with exact():
                    chain.outbound += fee
                chain.items.append(f"payout {payout.payout_id} network fee, not booked: {tx_hash} -{fee}")
    for payout in read.settled:
        for tx_hash, _, stored_fee, block in payout.txs:
            if block is None or block <= chain.height:
                continue
            if payout.coin_id == coin.coin_id:
                with exact():
                    chain.settled_ahead += payout.paid
            if native:
                with exact():
                    chain.settled_ahead += stored_fee or Decimal(0)
            chain.items.append(f"payout {payout.payout_id} settled in block {block}, above the height: {tx_hash}")


def _fees_read(*, coin: CoinConfig, read: _Snapshot, adapter: ChainAdapter, chain: _Chain) -> None:
    """
    Sweeps, gas top-ups and treasury transfers move the coin between exchange addresses (deposit,
    gas station, hot, change, cold: all in the holdings), so only their network fee leaves the
    chain; it is booked when the job settles. Mined at or below the height and not booked: outbound.
    Booked and mined above the height: settled ahead. A BTC consolidation or transfer is already in
    the UTXO set at the scanner's height (inputs spent, outputs ours): its amount is not counted
    again, only its fee, here.
    """
    for what, tx_hash, stored_fee, _ in read.fees_open:
        status = adapter.tx_status(tx_hash)
        if status.block_number is None or status.block_number > chain.height:
            continue
        fee = _amount(coin, status.fee) if status.fee is not None else (stored_fee or Decimal(0))
        with exact():
            chain.outbound += fee
        chain.items.append(f"{what} mined, network fee not booked: {tx_hash} -{fee}")
    for what, tx_hash, fee, block in read.fees_settled:
        with exact():
            chain.settled_ahead += fee or Decimal(0)
        chain.items.append(f"{what} network fee booked, mined in block {block}, above the height: {tx_hash}")


def reconcile_coin(
    *, coin_id: str, now: datetime | None = None, full: bool | None = None, adapter: ChainAdapter | None = None
) -> ReconciliationRun:
    """
    Reconcile one coin (module docstring) and store the run; alert and trip the breaker on a difference.

    `full` forces (True) or prevents (False) the full ledger check; by default it runs once every
    RECONCILE_FULL_EVERY_SECONDS.
    :raises UnknownCoin: no such coin.
    """
    started = now or timezone.now()
    coin = coins_selectors.coin_get(coin_id=coin_id)
    due, previous = _full_due(coin_id=coin.coin_id, now=started)
    full = due if full is None else full
    read = _snapshot(coin=coin, full=full, previous=previous)
    run = ReconciliationRun(
        coin_id=coin.coin_id,
        full=full,
        started_at=started,
        scan_height=read.scan_height,
        users_total=read.users,
        house_total=read.house,
        tolerance=_tolerance(coin),
        flows_checked=read.flows_checked,
        last_flow_id=read.last_flow_id,
        ledger_mismatches=len(read.mismatches),
    )
    details: dict[str, object] = {"mismatches": [_plain(row) for row in read.mismatches[:20]]}
    chain = None
    if read.scan_height is None:
        run.error = "the chain's scanner has not started"
    else:
        try:
            chain = _chain_read(coin=coin, read=read, adapter=adapter)
        except NODE_ERRORS as exc:
            run.error = f"{type(exc).__name__}: {str(exc)[:400]}"
    if chain is not None:
        with exact():
            inbound = sum(read.deposits.values(), Decimal(0)) + chain.gap_inbound
            expected = chain.on_chain - inbound + chain.outbound - chain.settled_ahead
            run.difference = read.users + read.house - expected
        run.chain_height, run.block_hash, run.on_chain = chain.height, chain.block_hash, chain.on_chain
        run.inbound, run.outbound, run.settled_ahead = inbound, chain.outbound, chain.settled_ahead
        details.update(
            holdings=chain.by_kind,
            inbound={**{k: str(v) for k, v in read.deposits.items()}, "unscanned": str(chain.gap_inbound)},
            items=chain.items[:50],
        )
    run.details = details
    if read.mismatches or (chain is not None and abs(run.difference) > run.tolerance):
        run.status = ReconciliationStatus.DIFFERENCE  # a ledger mismatch needs no chain to be one
    elif chain is None:
        run.status = ReconciliationStatus.NOT_RUN
    else:
        run.status = ReconciliationStatus.BALANCED
    run.finished_at = timezone.now()
    return _store(run=run, coin=coin, now=run.finished_at)


def _plain(row: dict[str, object]) -> dict[str, object]:
    return {key: (str(value) if isinstance(value, Decimal) else value) for key, value in row.items()}


def _text(run: ReconciliationRun) -> str:
    parts = []
    if run.ledger_mismatches:
        parts.append(f"{run.ledger_mismatches} balance row(s) differ from the sum of their flows")
    if run.difference:
        side = "shortfall on chain" if run.difference > 0 else "surplus on chain"
        parts.append(
            f"{side} of {abs(run.difference).normalize():f} {run.coin_id} (tolerance {run.tolerance.normalize():f}): "
            f"users {run.users_total.normalize():f} + house {run.house_total.normalize():f} against on-chain "
            f"{run.on_chain.normalize():f} - inbound {run.inbound.normalize():f} + outbound "
            f"{run.outbound.normalize():f} - settled ahead {run.settled_ahead.normalize():f} at height "
            f"{run.chain_height}"
        )
    return "; ".join(parts)


@transaction.atomic(durable=True)
def _store(*, run: ReconciliationRun, coin: CoinConfig, now: datetime) -> ReconciliationRun:
    run.save(force_insert=True)
    subject = alert_subject(coin.coin_id)
    if run.status == ReconciliationStatus.DIFFERENCE:
        text = _text(run)
        monitoring_services.alert_raise(
            severity=Severity.CRITICAL,
            kind=ALERT_KIND,
            subject=subject,
            message=f"reconciliation run {run.id} of {coin.coin_id}: {text}",
            now=now,
        )
        controls_breakers.breaker_trip(
            coin_id=coin.coin_id,
            reason=f"reconciliation run {run.id}: {text}"[:500],
            source=BreakerSource.RECONCILIATION,
            now=now,
        )
        logger.critical("reconciliation of %s: %s", coin.coin_id, text)
    elif run.status == ReconciliationStatus.BALANCED:
        monitoring_services.alert_resolve(
            kind=ALERT_KIND, subject=subject, how=f"reconciliation run {run.id} balanced", now=now
        )
    else:
        logger.warning("reconciliation of %s not run: %s", coin.coin_id, run.error)
    return run


def reconcile_all(*, now: datetime | None = None) -> list[ReconciliationRun]:
    """Reconcile every coin (one run each); one coin's failure does not stop the others."""
    runs = []
    for coin in coins_selectors.coin_list(enabled_only=False).order_by("coin_id"):
        runs.append(reconcile_coin(coin_id=coin.coin_id, now=now))
    return runs
