"""
Reads of the exchange's UTXO set: balances of an address or a pool, holdings per kind of address
(reconciliation), a payout's outputs, and what the scanner and the rebuild need.

Amounts are integer satoshis; convert with coins.selectors.amount_from_base_units.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Count, Q, QuerySet, Sum

from addresses import selectors as addresses_selectors
from addresses.models import AddressType
from chains.base import ChainAdapter, ChainError
from utxos.models import BtcUtxo
from utxos.replay import FACT_COLUMNS, Facts, Outpoint, Owner

# Chains whose scanner keeps the set (one table: btc_utxo).
UTXO_CHAINS = ("BTC",)

# The kinds of address a payout spends from: the hot wallets of a pool and their change.
HOT_POOL = (AddressType.HOT, AddressType.CHANGE)


def tracks(*, chain_id: str) -> bool:
    """Return whether the scanner keeps a UTXO set for chain_id."""
    return chain_id in UTXO_CHAINS


def min_confirmations_default() -> int:
    return settings.BTC_UTXO_MIN_CONFIRMATIONS


@dataclass(frozen=True)
class UtxoBalance:
    """What some of our addresses hold on chain, from the set, in satoshis.

    spendable + unconfirmed + locked = total: every unspent output on the chain the scanner holds.
    """

    spendable_sats: int = 0  # unlocked, with at least the minimum confirmations
    unconfirmed_sats: int = 0  # unlocked, fewer confirmations (at tip_height)
    locked_sats: int = 0  # locked by a payout: its spend is signed (pending_txid) or being signed
    outputs: int = 0

    @property
    def total_sats(self) -> int:
        return self.spendable_sats + self.unconfirmed_sats + self.locked_sats


def _unspent() -> QuerySet[BtcUtxo]:
    return BtcUtxo.objects.filter(spent_txid__isnull=True, orphaned=False)


def _balances(rows: QuerySet[BtcUtxo], *, tip_height: int, min_confirmations: int | None, group: str | None):
    confirmations = min_confirmations if min_confirmations is not None else min_confirmations_default()
    deep = tip_height - confirmations + 1
    free = Q(locked_by__isnull=True)
    sums = {
        "spendable": Sum("value_sats", filter=free & Q(block_height__lte=deep), default=0),
        "unconfirmed": Sum("value_sats", filter=free & Q(block_height__gt=deep), default=0),
        "locked": Sum("value_sats", filter=Q(locked_by__isnull=False), default=0),
        "outputs": Count("id"),
    }
    if group is None:
        return rows.aggregate(**sums)
    return rows.values(group).annotate(**sums).order_by(group)


def _balance_of(row: dict) -> UtxoBalance:
    return UtxoBalance(
        spendable_sats=int(row["spendable"]),
        unconfirmed_sats=int(row["unconfirmed"]),
        locked_sats=int(row["locked"]),
        outputs=int(row["outputs"]),
    )


def utxo_balance(
    *,
    tip_height: int,
    address_id: int | None = None,
    wallet_type: str | None = None,
    kinds: Collection[int] | None = None,
    min_confirmations: int | None = None,
) -> UtxoBalance:
    """
    Return what an address (address_id), or a pool (wallet_type and/or kinds, e.g. HOT_POOL), holds.

    `tip_height` is the height confirmations count from: the scanner's cursor height
    (recharges.selectors.scan_height) is what the set has seen. min_confirmations defaults to
    BTC_UTXO_MIN_CONFIRMATIONS (the same rule utxos_select_lock spends by).
    """
    rows = _unspent()
    if address_id is not None:
        rows = rows.filter(address_id=address_id)
    if wallet_type is not None:
        rows = rows.filter(wallet_type=wallet_type)
    if kinds is not None:
        rows = rows.filter(kind__in=list(kinds))
    return _balance_of(_balances(rows, tip_height=tip_height, min_confirmations=min_confirmations, group=None))


def utxo_holdings(*, tip_height: int, min_confirmations: int | None = None) -> dict[AddressType, UtxoBalance]:
    """
    Return the exchange's BTC on chain per kind of address (deposit, hot, change, cold), from the set.

    For reconciliation: Σ total_sats over the kinds is what every exchange address holds at the
    height the scanner has reached. Kinds holding nothing are absent.
    """
    grouped = _balances(_unspent(), tip_height=tip_height, min_confirmations=min_confirmations, group="kind")
    return {AddressType(row["kind"]): _balance_of(row) for row in grouped}


def utxos_of_payout(*, payout_ref: str) -> list[BtcUtxo]:
    """Return the outputs a payout locked, in the order it spends them (lock order: id)."""
    return list(BtcUtxo.objects.filter(locked_by=payout_ref).order_by("id"))


def utxo_get(*, txid: str, vout: int) -> BtcUtxo | None:
    """Return our output txid:vout, live or orphaned, or None if it is not ours."""
    return BtcUtxo.objects.filter(txid=txid, vout=vout).first()


# --- for the rebuild ------------------------------------------------------------------------------


def utxos_owners(*, chain_id: str, adapter: ChainAdapter) -> dict[str, Owner]:
    """
    Return {scriptPubKey: owner} of every address of ours that can hold outputs on chain_id:
    assigned deposit addresses, hot, change and cold. An address the chain cannot parse is skipped.
    """
    rows = [
        *addresses_selectors.deposit_addresses_assigned(chain_id=chain_id).values_list(
            "id", "address", "address_type", "wallet_type"
        ),
        *addresses_selectors.exchange_addresses_owned(chain_id=chain_id).values_list(
            "id", "address", "address_type", "wallet_type"
        ),
    ]
    owners = {}
    for address_id, address, kind, wallet_type in rows:
        try:
            owners[adapter.match_key(address)] = Owner(address_id=address_id, kind=kind, wallet_type=wallet_type)
        except (ChainError, ValueError, TypeError):
            continue
    return owners


def utxos_rebuild_base(*, from_height: int) -> dict[Outpoint, Facts]:
    """
    Return the live outputs created below from_height that blocks from from_height on may spend
    (unspent, or spent there), with their stored facts: where a rebuild from from_height starts.
    """
    rows = BtcUtxo.objects.filter(block_height__lt=from_height, orphaned=False).filter(
        Q(spent_height__isnull=True) | Q(spent_height__gte=from_height)
    )
    return {(txid, vout): Facts(*facts) for txid, vout, *facts in rows.values_list("txid", "vout", *FACT_COLUMNS)}


def utxos_facts(*, from_height: int = 0) -> dict[Outpoint, Facts]:
    """Return the facts of every live output created at from_height or later (tests, reports)."""
    rows = BtcUtxo.objects.filter(block_height__gte=from_height, orphaned=False)
    return {(txid, vout): Facts(*facts) for txid, vout, *facts in rows.values_list("txid", "vout", *FACT_COLUMNS)}


def utxo_totals_by_address() -> dict[int, int]:
    """
    Return {address id: satoshis} of every address of ours with unspent outputs on the best chain
    the scanner holds (proof of reserves). Outputs locked by a payout count: until its spend is
    mined they are still ours on chain.
    """
    rows = _unspent().order_by().values("address_id").annotate(total=Sum("value_sats"))
    return {row["address_id"]: int(row["total"]) for row in rows}


def utxo_free_totals_by_address() -> dict[int, int]:
    """
    Return {address id: satoshis} of our unspent outputs that no payout, sweep or transfer has
    locked: what an address keeps once the transactions already signed from it are mined (a
    payout's change goes to a change address, not back to where its inputs came from).
    """
    rows = _unspent().filter(locked_by__isnull=True).order_by().values("address_id").annotate(total=Sum("value_sats"))
    return {row["address_id"]: int(row["total"]) for row in rows}


def txids_spending_ours(*, txids: Collection[str]) -> set[str]:
    """Return those of the given transactions that spend one of our outputs: they come from the exchange."""
    wanted = sorted(set(txids))
    found: set[str] = set()
    for start in range(0, len(wanted), 500):
        found.update(
            BtcUtxo.objects.filter(spent_txid__in=wanted[start : start + 500]).values_list("spent_txid", flat=True)
        )
    return found
