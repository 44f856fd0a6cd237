"""
What blocks say about the exchange's outputs: pure functions, no database, no RPC.

The scanner (services.utxos_blocks_record) and the rebuild (services.utxos_rebuild_apply) read
blocks through these same functions, so a rebuild computes exactly what scanning wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace

from chains.base import Block

logger = logging.getLogger(__name__)

Outpoint = tuple[str, int]


@dataclass(frozen=True)
class Owner:
    """Which of our addresses a scriptPubKey belongs to."""

    address_id: int
    kind: int  # addresses.models.AddressType
    wallet_type: str


@dataclass(frozen=True)
class Facts:
    """What the chain says of one of our outputs: where it was created and, if so, where spent."""

    value_sats: int
    script_hex: str
    address_id: int
    kind: int
    wallet_type: str
    block_height: int
    block_hash: str
    spent_txid: str | None = None
    spent_height: int | None = None
    spent_hash: str | None = None

    def unspent(self) -> Facts:
        return replace(self, spent_txid=None, spent_height=None, spent_hash=None)


# The model's columns that hold Facts, in the dataclass's order.
FACT_COLUMNS = (
    "value_sats",
    "script_hex",
    "address_id",
    "kind",
    "wallet_type",
    "block_height",
    "block_hash",
    "spent_txid",
    "spent_height",
    "spent_hash",
)


def _outpoint_ok(txid: object, vout: object) -> bool:
    return isinstance(txid, str) and len(txid) == 64 and isinstance(vout, int) and vout >= 0


def block_outputs(block: Block, owners: Mapping[str, Owner]) -> Iterator[tuple[Outpoint, Facts]]:
    """
    Yield the block's outputs paid to one of our scripts (BTC: Transfer.match_key is the script).

    An output whose outpoint is not a txid and an output index (an adapter breaking its contract)
    is logged and left out: it could never be spent by us anyway.
    """
    for transfer in block.transfers:
        owner = owners.get(transfer.match_key)
        if owner is None:
            continue
        if not _outpoint_ok(transfer.tx_hash, transfer.index):
            logger.error(
                "UTXO set: malformed outpoint %r:%r in block %s left out",
                transfer.tx_hash,
                transfer.index,
                block.number,
            )
            continue
        yield (
            (transfer.tx_hash, transfer.index),
            Facts(
                value_sats=transfer.amount_base_units,
                script_hex=transfer.match_key,
                address_id=owner.address_id,
                kind=owner.kind,
                wallet_type=owner.wallet_type,
                block_height=block.number,
                block_hash=block.hash,
            ),
        )


def replay(*, state: dict[Outpoint, Facts], blocks: Iterable[Block], owners: Mapping[str, Owner]) -> None:
    """
    Apply blocks, in chain order, to `state` (outpoint -> facts): add our new outputs, mark the
    spends of those still unspent. State holds only our outputs, so memory is what we own,
    however many blocks are read.
    """
    unspent_txids = {txid for (txid, _), facts in state.items() if facts.spent_txid is None}
    for block in blocks:
        for outpoint, facts in block_outputs(block, owners):
            if outpoint not in state:
                state[outpoint] = facts
                unspent_txids.add(outpoint[0])
        for spend in block.spends:
            if spend.txid not in unspent_txids:  # the cheap test first: most inputs are not ours
                continue
            outpoint = (spend.txid, spend.vout)
            facts = state.get(outpoint)
            if facts is not None and facts.spent_txid is None:
                state[outpoint] = replace(
                    facts, spent_txid=spend.spender, spent_height=block.number, spent_hash=block.hash
                )


@dataclass(frozen=True)
class Difference:
    """How a stored set differs from the replayed one (each a sorted list of outpoints)."""

    missing: list[Outpoint]  # replayed, not stored (or stored as orphaned)
    changed: list[Outpoint]  # stored with other facts
    extra: list[Outpoint]  # stored as live, not on the chain

    @property
    def none(self) -> bool:
        return not (self.missing or self.changed or self.extra)


def compare(*, expected: Mapping[Outpoint, Facts], stored: Mapping[Outpoint, Facts]) -> Difference:
    return Difference(
        missing=sorted(set(expected) - set(stored)),
        changed=sorted(o for o in set(expected) & set(stored) if expected[o] != stored[o]),
        extra=sorted(set(stored) - set(expected)),
    )
