"""
Coin selection for payouts and sweeps: pick our unspent outputs, lock them, record the spend.

The payout's transaction, in one `transaction.atomic(durable=True)` of the caller:

    selection = utxos_services.utxos_select_lock(wallet_type="default", amount_sats=..., payout_ref=...,
                                                 fee_rate_sat_vb=..., tip_height=..., now=now)
    unsigned = adapter.build_transfer(from_address=..., to_address=..., amount_base_units=...,
                                      utxos=selection.inputs(), change_address=...,
                                      fee_rate_sat_vb=<the same rate>)
    signed = signer(unsigned)
    ... store the signed transaction ...
    utxos_services.utxos_spend_pending(payout_ref=..., txid=signed.tx_hash)

so the lock, the signed transaction and the pending spend commit together or not at all. The
scanner later records the spend when a block holds it; a payout given up before it was mined hands
its outputs back with utxos_release.

Concurrency: candidates are read without a lock, then each chosen row is locked by primary key
with SELECT ... FOR UPDATE SKIP LOCKED and its availability checked again under the lock. A payer
never waits for another and never locks a row it does not spend, so two payers choosing at once
get disjoint outputs, each from what the other left.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet, Sum

from addresses import selectors as addresses_selectors
from addresses.models import AddressType
from chains.btc import DUST_SATS, Utxo, p2wpkh_vsize
from utxos.models import BtcUtxo
from utxos.selectors import HOT_POOL, min_confirmations_default
from wallet_project.errors import Conflict, WalletError

# Outputs tried as the single input before falling back to several.
SINGLE_TRIES = 20


class UtxoShortfall(WalletError):
    """The pool's free confirmed outputs cannot pay amount + fee (within max_inputs inputs)."""

    code = "utxo_shortfall"

    def __init__(self, message: str, *, free_sats: int, needed_sats: int) -> None:
        super().__init__(message)
        self.free_sats = free_sats
        self.needed_sats = needed_sats


class UtxoConflict(Conflict):
    """A payout reference that already holds outputs, or a release of outputs whose spend was mined."""

    code = "utxo_conflict"


@dataclass(frozen=True)
class LockedUtxo:
    """One output a payout locked, with what its input needs (the owning address and public key)."""

    id: int
    txid: str
    vout: int
    value_sats: int
    script_hex: str
    address_id: int
    address: str
    public_key_hex: str

    def as_input(self) -> Utxo:
        return Utxo(
            txid=self.txid,
            vout=self.vout,
            value_sats=self.value_sats,
            script_hex=self.script_hex,
            public_key_hex=self.public_key_hex,
        )


@dataclass(frozen=True)
class UtxoSelection:
    """
    The outputs a payout spends and the fee they leave, priced as BtcAdapter.build_transfer prices it.

    build_transfer(utxos=selection.inputs(), fee_rate_sat_vb=<the rate given>, outputs of
    `outputs` payments totalling amount_sats) uses every input and makes the same fee and change.
    """

    payout_ref: str
    utxos: tuple[LockedUtxo, ...]
    amount_sats: int
    fee_sats: int
    change_sats: int  # 0: no change output; the remainder (at most the dust limit) goes to the fee

    @property
    def total_sats(self) -> int:
        return sum(u.value_sats for u in self.utxos)

    def inputs(self) -> list[Utxo]:
        return [u.as_input() for u in self.utxos]


def _free(
    *, wallet_type: str, kinds: Collection[int], tip_height: int, min_confirmations: int, address_id: int | None
) -> QuerySet[BtcUtxo]:
    rows = BtcUtxo.objects.filter(
        spent_txid__isnull=True,
        orphaned=False,
        locked_by__isnull=True,
        wallet_type=wallet_type,
        kind__in=list(kinds),
        block_height__lte=tip_height - min_confirmations + 1,
    )
    if address_id is not None:
        rows = rows.filter(address_id=address_id)
    return rows


def _lock(free: QuerySet[BtcUtxo], row_id: int) -> bool:
    # By primary key, re-checking availability under the lock; never waits for another payer.
    return bool(list(free.filter(id=row_id).select_for_update(skip_locked=True).values_list("id", flat=True)))


@transaction.atomic(savepoint=False)
def utxos_select_lock(
    *,
    wallet_type: str,
    amount_sats: int,
    payout_ref: str,
    fee_rate_sat_vb: int,
    tip_height: int,
    now: datetime,
    outputs: int = 1,
    min_confirmations: int | None = None,
    max_inputs: int | None = None,
    kinds: Collection[int] = HOT_POOL,
    address_id: int | None = None,
    exclude_txids: Collection[str] = (),
) -> UtxoSelection:
    """
    Choose and lock outputs of a pool that pay `amount_sats` to `outputs` payments plus the fee.

    Candidates: unspent, not orphaned, not locked, with at least `min_confirmations` (default
    BTC_UTXO_MIN_CONFIRMATIONS) at `tip_height` (the scanner's cursor height), of addresses of
    `kinds` (hot and change by default) in business pool `wallet_type` (or of one address), and
    not created by one of `exclude_txids` (a payout's change that a child not yet mined spends).

    Policy: the smallest output that pays it alone; otherwise the largest first until covered (at
    most `max_inputs`, default BTC_UTXO_MAX_INPUTS). One input is the smallest transaction and the
    smallest fee, and taking the smallest that suffices keeps the big outputs for big payouts and
    for the next payers, since an output's change is spendable only once mined. Largest-first then
    pays with the fewest inputs. The fee is priced for `outputs` payments plus change
    (chains.btc.p2wpkh_vsize); change at or below the dust limit is left to the fee.

    The rows are locked (FOR UPDATE SKIP LOCKED: concurrent payers get disjoint outputs) and marked
    locked_by=payout_ref; the caller's transaction must store the signed transaction and call
    utxos_spend_pending before it commits. Joins the caller's transaction.
    :raises UtxoShortfall: the free outputs cannot pay (the caller's transaction is then doomed).
    :raises UtxoConflict: payout_ref already holds outputs.
    :raises WalletError: an amount, rate, count or reference out of range.
    """
    if amount_sats <= DUST_SATS or fee_rate_sat_vb < 1 or outputs < 1:
        raise WalletError("A selection needs an amount above the dust limit, a fee rate and at least one output.")
    if not payout_ref or len(payout_ref) > 64:
        raise WalletError("A selection needs a payout reference of 1 to 64 characters.", field="payout_ref")
    if BtcUtxo.objects.filter(locked_by=payout_ref).exists():
        raise UtxoConflict(f"{payout_ref} already holds outputs: release them or spend what it holds.")
    confirmations = min_confirmations if min_confirmations is not None else min_confirmations_default()
    limit = max_inputs if max_inputs is not None else settings.BTC_UTXO_MAX_INPUTS
    free = _free(
        wallet_type=wallet_type,
        kinds=kinds,
        tip_height=tip_height,
        min_confirmations=confirmations,
        address_id=address_id,
    )
    if exclude_txids:
        free = free.exclude(txid__in=list(exclude_txids))

    def needed(inputs: int) -> int:
        return amount_sats + p2wpkh_vsize(inputs, outputs + 1) * fee_rate_sat_vb

    fields = ("id", "value_sats")
    chosen: list[tuple[int, int]] = []
    for row_id, value in (
        free.filter(value_sats__gte=needed(1)).order_by("value_sats", "id").values_list(*fields)[:SINGLE_TRIES]
    ):
        if _lock(free, row_id):
            chosen = [(row_id, value)]
            break
    tried: set[int] = set()
    while not chosen or sum(v for _, v in chosen) < needed(len(chosen)):
        if len(chosen) >= limit:
            raise _shortfall(free=free, needed=needed(limit), limit=limit, wallet_type=wallet_type)
        batch = list(free.exclude(id__in=tried).order_by("-value_sats", "id").values_list(*fields)[: limit * 2])
        if not batch:
            raise _shortfall(free=free, needed=needed(max(len(chosen), 1)), limit=limit, wallet_type=wallet_type)
        for row_id, value in batch:
            tried.add(row_id)
            if _lock(free, row_id):
                chosen.append((row_id, value))
                if sum(v for _, v in chosen) >= needed(len(chosen)) or len(chosen) >= limit:
                    break
    ids = [row_id for row_id, _ in chosen]
    BtcUtxo.objects.filter(id__in=ids).update(locked_by=payout_ref, lock_time=now, update_time=now)
    return _selection(
        payout_ref=payout_ref, ids=ids, amount_sats=amount_sats, fee_rate=fee_rate_sat_vb, outputs=outputs
    )


def _shortfall(*, free: QuerySet[BtcUtxo], needed: int, limit: int, wallet_type: str) -> UtxoShortfall:
    total = free.aggregate(total=Sum("value_sats", default=0))["total"]
    return UtxoShortfall(
        f"The free confirmed outputs of pool {wallet_type!r} ({total} sat) cannot pay {needed} sat "
        f"with at most {limit} inputs.",
        free_sats=total,
        needed_sats=needed,
    )


def _selection(*, payout_ref: str, ids: list[int], amount_sats: int, fee_rate: int, outputs: int) -> UtxoSelection:
    by_id = {row.id: row for row in BtcUtxo.objects.filter(id__in=ids)}
    rows = [by_id[row_id] for row_id in ids]
    keys = addresses_selectors.public_keys(address_ids={row.address_id for row in rows})
    utxos = tuple(
        LockedUtxo(
            id=row.id,
            txid=row.txid,
            vout=row.vout,
            value_sats=row.value_sats,
            script_hex=row.script_hex,
            address_id=row.address_id,
            address=keys[row.address_id][0] if row.address_id in keys else "",
            public_key_hex=keys[row.address_id][1] if row.address_id in keys else "",
        )
        for row in rows
    )
    total = sum(u.value_sats for u in utxos)
    fee = p2wpkh_vsize(len(utxos), outputs + 1) * fee_rate
    change = total - amount_sats - fee
    if change <= DUST_SATS:
        change, fee = 0, total - amount_sats
    return UtxoSelection(payout_ref=payout_ref, utxos=utxos, amount_sats=amount_sats, fee_sats=fee, change_sats=change)


@transaction.atomic(savepoint=False)
def utxos_spend_pending(*, payout_ref: str, txid: str) -> int:
    """
    Record that the outputs payout_ref locked are spent by its signed transaction `txid` (not yet
    mined); return how many. Call it in the transaction that stores that signed transaction.
    Calling it again with the same txid changes nothing; another txid replaces it (a re-signed
    transaction spending the same outputs).
    :raises UtxoConflict: payout_ref holds no outputs, or one of them was spent by another transaction.
    """
    rows = list(BtcUtxo.objects.select_for_update().filter(locked_by=payout_ref).order_by("id"))
    if not rows:
        raise UtxoConflict(f"{payout_ref} holds no outputs.")
    spent = [row for row in rows if row.spent_txid is not None and row.spent_txid != txid]
    if spent:
        raise UtxoConflict(f"Output {spent[0]} of {payout_ref} was spent by {spent[0].spent_txid}.")
    return BtcUtxo.objects.filter(id__in=[row.id for row in rows]).update(pending_txid=txid)


@transaction.atomic(savepoint=False)
def utxos_release(*, payout_ref: str) -> int:
    """
    Hand back the outputs payout_ref locked (a payout abandoned before its transaction was mined);
    return how many. They become selectable again once unspent on chain.

    Only for a transaction that can no longer be mined (never broadcast, or its inputs proven
    spent elsewhere): releasing a transaction still in a mempool lets another payout pick outputs
    it spends. Releasing twice releases nothing the second time.
    :raises UtxoConflict: a block already holds the spend by the payout's own transaction.
    """
    rows = list(BtcUtxo.objects.select_for_update().filter(locked_by=payout_ref).order_by("id"))
    mined = [row for row in rows if row.spent_txid is not None and row.spent_txid == row.pending_txid]
    if mined:
        raise UtxoConflict(f"{payout_ref}'s transaction {mined[0].spent_txid} is mined: its outputs are spent.")
    return BtcUtxo.objects.filter(id__in=[row.id for row in rows]).update(
        locked_by=None, lock_time=None, pending_txid=None
    )


@transaction.atomic(savepoint=False)
def utxos_lock_for_sweep(
    *,
    sweep_ref: str,
    tip_height: int,
    min_confirmations: int,
    min_value_sats: int,
    max_inputs: int,
    now: datetime,
    kinds: Collection[int] = (AddressType.USER_DEPOSIT,),
) -> tuple[LockedUtxo, ...]:
    """
    Lock every free output of deposit addresses worth more than min_value_sats (what its input costs
    to spend), with at least min_confirmations at tip_height, up to max_inputs, largest first: what a
    sweep consolidates into one transaction. Joins the caller's transaction, which must store the
    signed consolidation and call utxos_spend_pending(payout_ref=sweep_ref, ...) before it commits.
    Outputs worth less stay where they are, to grow with the next deposits.

    :raises UtxoConflict: sweep_ref already holds outputs.
    """
    if not sweep_ref or len(sweep_ref) > 64:
        raise WalletError("A sweep needs a reference of 1 to 64 characters.", field="sweep_ref")
    if BtcUtxo.objects.filter(locked_by=sweep_ref).exists():
        raise UtxoConflict(f"{sweep_ref} already holds outputs: release them or spend what it holds.")
    rows = BtcUtxo.objects.filter(
        spent_txid__isnull=True,
        orphaned=False,
        locked_by__isnull=True,
        kind__in=list(kinds),
        block_height__lte=tip_height - min_confirmations + 1,
        value_sats__gt=min_value_sats,
    )
    candidates = list(rows.order_by("-value_sats", "id").values_list("id", flat=True)[: max_inputs * 2])
    ids: list[int] = []
    for row_id in candidates:
        if len(ids) >= max_inputs:
            break
        if _lock(rows, row_id):
            ids.append(row_id)
    if not ids:
        return ()
    BtcUtxo.objects.filter(id__in=ids).update(locked_by=sweep_ref, lock_time=now, update_time=now)
    return _selection(payout_ref=sweep_ref, ids=ids, amount_sats=0, fee_rate=0, outputs=1).utxos
