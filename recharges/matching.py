"""
Matching a block's transfers against watched deposit addresses: pure CPU, no database, no RPC.

The scanner calls `transfers_match` once per block with a dict {match_key: (user_id, address)}
built from the watch list, so a block costs one dict lookup per transfer whatever the number
of watched addresses. Only transfers that hit a watched address are looked at further (contract,
success, amount), which is where the fake-deposit rules live.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chains.base import ChainError, Transfer

logger = logging.getLogger(__name__)

# match_key -> (user id, address); user id None: an address of the exchange's own (hot, change,
# cold), watched for the UTXO set, never a deposit.
Watch = dict[str, tuple[int | None, str]]


@dataclass(frozen=True)
class CoinRules:
    """How a chain's transfers map to coins: the native coin and the configured token contracts."""

    chain_id: str
    native_coin_id: str | None
    # Canonical contract key (adapter.match_key of the contract) -> coin_id.
    tokens: dict[str, str] = field(default_factory=dict)
    coin_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A transfer to a watched address that counts as a deposit of coin_id."""

    transfer: Transfer
    coin_id: str
    user_id: int
    address: str


@dataclass(frozen=True)
class Ignored:
    """A transfer to a watched address that does not count, and why (for the log)."""

    transfer: Transfer
    reason: str


def transfer_check(transfer: object) -> Transfer:
    """
    Return transfer if its fields have the types the interface promises.

    :raises ChainError: the adapter produced something malformed.
    """
    if not isinstance(transfer, Transfer):
        raise ChainError(f"a transfer is a {type(transfer).__name__}, not a Transfer")
    ok = (
        isinstance(transfer.tx_hash, str)
        and 0 < len(transfer.tx_hash) <= 255
        and isinstance(transfer.index, int)
        and not isinstance(transfer.index, bool)
        # Native transfers: -1 the transaction's own value, -2 - k the k-th ether a contract moved inside it.
        and (transfer.index >= -1 or transfer.contract is None)
        and isinstance(transfer.amount_base_units, int)
        and not isinstance(transfer.amount_base_units, bool)
        and transfer.amount_base_units >= 0
        and isinstance(transfer.to_address, str)
        and isinstance(transfer.from_address, str)
        and isinstance(transfer.success, bool)
        and (transfer.contract is None or isinstance(transfer.contract, str))
    )
    if not ok:
        raise ChainError(f"malformed transfer in tx {str(transfer.tx_hash)[:80]!r}")
    return transfer


def transfers_match(
    *,
    transfers: Iterable[Transfer],
    watch: Watch,
    rules: CoinRules,
    contract_key: Callable[[str], str],
) -> tuple[list[Candidate], list[Ignored]]:
    """
    Return the transfers of a block that are deposits, and those to watched addresses that are not.

    A deposit is a successful transfer to a watched address, of the native coin or of a token from
    the coin's configured contract (compared by canonical key), with a positive amount.
    :raises ChainError: a transfer to a watched address is malformed.
    """
    candidates: list[Candidate] = []
    ignored: list[Ignored] = []
    lookup = watch.get
    for transfer in transfers:
        owner = lookup(transfer.match_key)
        if owner is None or owner[0] is None:
            continue
        transfer_check(transfer)
        if not transfer.success:
            # A reverted ERC20 transfer still emits nothing, but its native value and any
            # adapter-reported transfer of a failed TRON contract must never count.
            ignored.append(Ignored(transfer, "transaction failed on chain"))
            continue
        coin_id, reason = coin_of(transfer=transfer, rules=rules, contract_key=contract_key)
        if coin_id is None:
            ignored.append(Ignored(transfer, reason))
            continue
        if transfer.amount_base_units <= 0:
            ignored.append(Ignored(transfer, "zero amount"))
            continue
        if _from_exchange(transfer=transfer, watch=watch, contract_key=contract_key):
            # The exchange paying one of its deposit addresses is a sweep's gas (energy) top-up: the
            # exchange's own money, spent on the sweep's fee, never the user's deposit. (A user's
            # withdrawal to another user's deposit address is an internal transfer, never on chain.)
            ignored.append(Ignored(transfer, "from an exchange address: internal (a gas top-up)"))
            continue
        candidates.append(Candidate(transfer=transfer, coin_id=coin_id, user_id=owner[0], address=owner[1]))
    return candidates, ignored


def _from_exchange(*, transfer: Transfer, watch: Watch, contract_key: Callable[[str], str]) -> bool:
    """Whether the transfer's sender is one of the exchange's own addresses (hot, gas station, change, cold)."""
    if not transfer.from_address:
        return False  # BTC: inputs have no single sender here
    try:
        sender = watch.get(contract_key(transfer.from_address))
    except (ChainError, ValueError, TypeError):
        return False
    return sender is not None and sender[0] is None


def coin_of(*, transfer: Transfer, rules: CoinRules, contract_key: Callable[[str], str]) -> tuple[str | None, str]:
    """Return the coin a transfer moves (the native coin, or the token of a configured contract), or (None, why not)."""
    if transfer.contract is None:
        if rules.native_coin_id is None:
            return None, "no native coin configured"
        return rules.native_coin_id, ""
    try:
        key = contract_key(transfer.contract)
    except (ChainError, ValueError, TypeError):
        return None, "token contract is not a valid address"
    coin_id = rules.tokens.get(key)
    if coin_id is None:
        return None, "token from a contract that is not configured"
    return coin_id, ""
