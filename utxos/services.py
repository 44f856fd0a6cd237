"""
Writes of the exchange's UTXO set (btc_utxo).

Two writers, on separate columns:

- The scanner (recharges drives it) writes what the blocks say, in the transaction that moves its
  cursor: `utxos_blocks_record` for blocks that extend the chain (and for rescanned blocks),
  `utxos_blocks_orphan` when a reorg drops blocks, `utxos_rebuild_apply` when ops rebuild the set.
- Payouts and sweeps (withdrawals) select and lock outputs, in the transaction that stores their
  signed transaction: `utxos_select_lock`, `utxos_spend_pending`, `utxos_release`
  (see utxos/locking.py, re-exported here).

Every function here is a building block: it joins the caller's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from django.db import transaction
from django.utils import timezone

from addresses import selectors as addresses_selectors
from chains.base import Block
from controls import breakers as controls_breakers
from controls.models import BreakerSource
from monitoring import services as monitoring_services
from monitoring.models import Severity
from utxos.locking import (
    LockedUtxo,
    UtxoConflict,
    UtxoSelection,
    UtxoShortfall,
    utxos_release,
    utxos_select_lock,
    utxos_spend_pending,
)
from utxos.models import BtcUtxo
from utxos.replay import FACT_COLUMNS, Difference, Facts, Outpoint, Owner, block_outputs, compare
from utxos.selectors import UTXO_CHAINS, utxos_rebuild_base
from wallet_project.db import rows_insert
from wallet_project.errors import Conflict

__all__ = [
    "LockedUtxo",
    "RebuildReport",
    "SetMoved",
    "UtxoConflict",
    "UtxoSelection",
    "UtxoShortfall",
    "utxos_blocks_orphan",
    "utxos_blocks_record",
    "utxos_rebuild_apply",
    "utxos_release",
    "utxos_select_lock",
    "utxos_spend_pending",
]

logger = logging.getLogger(__name__)

# Rows per IN list.
CHUNK = 500

# What the scanner's watch list holds per scriptPubKey: (user id or None for our own, address).
WatchOwners = Mapping[str, tuple[int | None, str]]


def _owners_of(*, chain_id: str, blocks: Sequence[Block], watch: WatchOwners) -> dict[str, Owner]:
    """The owners of the scripts the blocks pay that the watch list knows (one query, if any)."""
    addresses = {t.match_key: watch[t.match_key][1] for b in blocks for t in b.transfers if t.match_key in watch}
    if not addresses:
        return {}
    rows = addresses_selectors.addresses_by_address(chain_id=chain_id, addresses=set(addresses.values()))
    owners = {}
    for key, address in addresses.items():
        row = rows.get(address)
        if row is None:
            logger.warning("UTXO set of %s: watched address %s has no row; output not recorded", chain_id, address)
            continue
        owners[key] = Owner(address_id=row.id, kind=row.address_type, wallet_type=row.wallet_type)
    return owners


def _locked_by_outpoint(outpoints: Sequence[Outpoint]) -> dict[Outpoint, BtcUtxo]:
    txids = sorted({txid for txid, _ in outpoints})
    wanted = set(outpoints)
    found: dict[Outpoint, BtcUtxo] = {}
    for start in range(0, len(txids), CHUNK):
        for row in BtcUtxo.objects.select_for_update().filter(txid__in=txids[start : start + CHUNK]).order_by("id"):
            if (row.txid, row.vout) in wanted:
                found[(row.txid, row.vout)] = row
    return found


def _new_row(outpoint: Outpoint, facts: Facts) -> BtcUtxo:
    return BtcUtxo(txid=outpoint[0], vout=outpoint[1], **asdict(facts))


def _facts_write(row: BtcUtxo, facts: Facts) -> None:
    for column, value in asdict(facts).items():
        setattr(row, column, value)
    row.orphaned = False
    row.save(update_fields=[*FACT_COLUMNS, "orphaned", "update_time"])


@transaction.atomic(savepoint=False)
def utxos_blocks_record(*, chain_id: str, blocks: Sequence[Block], watch: WatchOwners) -> tuple[int, int]:
    """
    Record what consecutive blocks of the best chain did to our outputs; return (new outputs, spends).

    Called by the scanner in the transaction that stores the blocks (or rescans one), so the set
    moves with the cursor. Outputs paid to a watched script (deposit, hot, change or cold address:
    `watch` is the scanner's watch list) are added, or revived if a reorg had orphaned them; the
    blocks' inputs that spend one of our unspent outputs mark it spent. Spends are found with one
    query for the txids of our unspent outputs and a set lookup per input (about 60 ms per batch
    for 100,000 unspent outputs on MariaDB; sweeps keep the number far lower). Idempotent: a block
    recorded twice changes nothing. A no-op on chains without UTXOs.
    """
    if chain_id not in UTXO_CHAINS or not blocks:
        return 0, 0
    now = timezone.now()
    first, last = blocks[0].number, blocks[-1].number
    hashes = [block.hash for block in blocks]
    # Rows at these heights from other blocks are left-overs of a branch the node dropped.
    at_heights = BtcUtxo.objects.filter(block_height__gte=first, block_height__lte=last, orphaned=False)
    at_heights.exclude(block_hash__in=hashes).update(orphaned=True, update_time=now)
    spent_at = BtcUtxo.objects.filter(spent_height__gte=first, spent_height__lte=last)
    spent_at.exclude(spent_hash__in=hashes).update(spent_txid=None, spent_height=None, spent_hash=None, update_time=now)

    owners = _owners_of(chain_id=chain_id, blocks=blocks, watch=watch)
    outputs = {outpoint: facts for block in blocks for outpoint, facts in block_outputs(block, owners)}
    existing = _locked_by_outpoint(list(outputs)) if outputs else {}
    new = []
    for outpoint, facts in outputs.items():
        row = existing.get(outpoint)
        if row is None:
            new.append(_new_row(outpoint, facts))
        elif row.orphaned:
            _facts_write(row, facts)  # mined again on the new branch; a payout's lock is kept
            logger.info("UTXO %s:%s found again at block %s after a reorg", *outpoint, facts.block_height)
        elif row.block_hash != facts.block_hash:
            logger.warning(
                "UTXO %s:%s seen in blocks %s and %s; left as is", *outpoint, row.block_hash, facts.block_hash
            )
    for start in range(0, len(new), CHUNK):
        rows_insert(new[start : start + CHUNK])

    spends = 0
    if any(block.spends for block in blocks):
        spends = _spends_record(chain_id=chain_id, blocks=blocks, now=now)
    return len(new), spends


def _spends_record(*, chain_id: str, blocks: Sequence[Block], now: object) -> int:
    # One query for the txids of our unspent outputs (read after the inserts above, so an output
    # created and spent within these blocks is known), then a set lookup per input: a block's
    # thousands of inputs cost no query. Only the inputs that hit are resolved to rows.
    unspent = BtcUtxo.objects.filter(spent_txid__isnull=True, orphaned=False)
    known_txids = set(unspent.values_list("txid", flat=True))
    hits = [(index, spend) for index, block in enumerate(blocks) for spend in block.spends if spend.txid in known_txids]
    if not hits:
        return 0
    txids = sorted({spend.txid for _, spend in hits})
    rows: dict[Outpoint, int] = {}
    for start in range(0, len(txids), CHUNK):
        for row_id, txid, vout in unspent.filter(txid__in=txids[start : start + CHUNK]).values_list(
            "id", "txid", "vout"
        ):
            rows[(txid, vout)] = row_id
    spent: dict[tuple[int, str], list[int]] = {}  # (block index, spender) -> rows
    for index, spend in hits:
        row_id = rows.pop((spend.txid, spend.vout), None)
        if row_id is None:
            continue
        if not isinstance(spend.spender, str) or len(spend.spender) != 64:
            logger.error(
                "UTXO set: malformed spending txid %r in block %s left out", spend.spender, blocks[index].number
            )
            continue
        spent.setdefault((index, spend.spender), []).append(row_id)
    recorded = 0
    for (index, spender), ids in spent.items():
        block = blocks[index]
        _spent_elsewhere_alert(chain_id=chain_id, ids=ids, spender=spender, height=block.number)
        recorded += BtcUtxo.objects.filter(id__in=ids).update(
            spent_txid=spender, spent_height=block.number, spent_hash=block.hash, update_time=now
        )
    return recorded


def _spent_elsewhere_alert(*, chain_id: str, ids: list[int], spender: str, height: int) -> None:
    """Alert and trip the chain's breakers when a payout's input is spent by a transaction it did not sign."""
    other = list(
        BtcUtxo.objects.filter(id__in=ids, pending_txid__isnull=False)
        .exclude(pending_txid=spender)
        .values_list("txid", "vout", "locked_by", "pending_txid")
    )
    for txid, vout, locked_by, pending in other:
        text = (
            f"output {txid}:{vout} locked by {locked_by} for its transaction {pending} was spent by {spender} "
            f"(block {height}): that transaction can never be mined; the payout must be reviewed"
        )
        logger.error("%s", text)
        monitoring_services.alert_raise(
            severity=Severity.CRITICAL,
            kind="UTXO_SPENT_ELSEWHERE",
            subject=f"payout {locked_by}",
            message=text,
            now=timezone.now(),
        )
        # An impossible state for a wallet that alone holds its keys: stop the chain's payouts until people look.
        controls_breakers.breaker_trip_chain(chain_id=chain_id, reason=text, source=BreakerSource.SCANNER)


@transaction.atomic(savepoint=False)
def utxos_blocks_orphan(*, chain_id: str, above_height: int) -> tuple[int, int]:
    """
    Undo what the blocks above `above_height` (the fork point) did; return (outputs orphaned, spends undone).

    Called by the scanner in the transaction that moves its cursor back to the fork point. Our
    outputs created there are marked orphaned (kept with their payout lock, revived if the new
    branch mines them again); outputs spent there are unspent again, and stay out of coin selection
    while a payout's lock (its signed spend, still ours to rebroadcast) holds them. Rescanning the
    new branch records what it does.
    """
    if chain_id not in UTXO_CHAINS:
        return 0, 0
    now = timezone.now()
    orphaned = BtcUtxo.objects.filter(block_height__gt=above_height, orphaned=False).update(
        orphaned=True, update_time=now
    )
    undone = BtcUtxo.objects.filter(spent_height__gt=above_height).update(
        spent_txid=None, spent_height=None, spent_hash=None, update_time=now
    )
    if orphaned or undone:
        logger.warning(
            "UTXO set of %s: reorg above %s orphaned %s outputs, undid %s spends",
            chain_id,
            above_height,
            orphaned,
            undone,
        )
    return orphaned, undone


# --- rebuild -----------------------------------------------------------------------------------


class SetMoved(Conflict):
    """The outputs the rebuild started from changed while it read the blocks: run it again."""

    code = "utxo_set_moved"


@dataclass(frozen=True)
class RebuildReport:
    from_height: int
    to_height: int
    outputs: int  # our outputs the replay holds (created from from_height on, or spent there)
    unspent: int
    difference: Difference
    applied: bool

    @property
    def identical(self) -> bool:
        return self.difference.none

    def summary(self) -> str:
        d = self.difference
        state = "identical" if self.identical else ("repaired" if self.applied else "DIFFERENT")
        return (
            f"UTXO set {self.from_height}..{self.to_height}: {state}; {self.outputs} outputs ({self.unspent} unspent); "
            f"missing {len(d.missing)}, changed {len(d.changed)}, extra {len(d.extra)}"
        )


@transaction.atomic(savepoint=False)
def utxos_rebuild_apply(
    *,
    from_height: int,
    to_height: int,
    base: Mapping[Outpoint, Facts],
    expected: Mapping[Outpoint, Facts],
    apply: bool,
) -> RebuildReport:
    """
    Compare the stored set with one replayed from the blocks, and (if `apply`) make it equal.

    `base` is what utxos_rebuild_base(from_height) returned before the blocks were read, `expected`
    that base with its spends from from_height on cleared and blocks from_height..to_height
    replayed (replay.replay). The caller holds the scanner's cursor lock, so no block is recorded
    meanwhile. Missing outputs are inserted (or revived), changed facts rewritten, live outputs the
    chain does not have are orphaned. Payout locks are left as they are.
    :raises SetMoved: the base changed since it was read (a rescan recorded something).
    """
    if utxos_rebuild_base(from_height=from_height) != dict(base):
        raise SetMoved("The UTXO set changed while the blocks were read; run the rebuild again.")
    stored: dict[Outpoint, Facts] = dict(base)
    live = BtcUtxo.objects.filter(block_height__gte=from_height, orphaned=False)
    for txid, vout, *facts in live.values_list("txid", "vout", *FACT_COLUMNS):
        stored[(txid, vout)] = Facts(*facts)
    difference = compare(expected=expected, stored=stored)
    if apply and not difference.none:
        _rebuild_write(expected=expected, difference=difference)
    report = RebuildReport(
        from_height=from_height,
        to_height=to_height,
        outputs=len(expected),
        unspent=sum(1 for facts in expected.values() if facts.spent_txid is None),
        difference=difference,
        applied=apply,
    )
    if not report.identical:
        logger.warning("%s: %s", report.summary(), {k: v[:20] for k, v in asdict(difference).items()})
    return report


def _rebuild_write(*, expected: Mapping[Outpoint, Facts], difference: Difference) -> None:
    # A missing output may be stored as orphaned: it is revived, not inserted again.
    touched = [*difference.missing, *difference.changed, *difference.extra]
    rows = _locked_by_outpoint(touched)
    new = []
    for outpoint in [*difference.missing, *difference.changed]:
        row = rows.get(outpoint)
        if row is None:
            new.append(_new_row(outpoint, expected[outpoint]))
        else:
            _facts_write(row, expected[outpoint])
    for start in range(0, len(new), CHUNK):
        rows_insert(new[start : start + CHUNK])
    for outpoint in difference.extra:
        row = rows[outpoint]
        row.orphaned = True
        row.spent_txid = row.spent_height = row.spent_hash = None
        row.save(update_fields=["orphaned", "spent_txid", "spent_height", "spent_hash", "update_time"])
