"""
Rebuilding the exchange's UTXO set from the chain: read the blocks again, replay them, compare
with what the scanner stored and (unless only checking) make the set equal to the replay.

Here rather than in utxos because it needs the scanner's cursor: the blocks are read by RPC outside
any transaction, then the comparison runs under the cursor's lock, and only if the cursor has not
moved and the last block read is the one the scanner holds (otherwise CursorMoved: run it again).
"""

from __future__ import annotations

import logging

from django.db import transaction

from chains.base import ChainAdapter, ChainError
from recharges.models import RecentBlock, ScanCursor
from recharges.services import CursorMoved, adapter_for
from utxos import replay as utxos_replay
from utxos import selectors as utxos_selectors
from utxos import services as utxos_services
from wallet_project.errors import WalletError

logger = logging.getLogger(__name__)

# Blocks read per node call of the rebuild.
READ_CHUNK = 100


def utxo_set_rebuild(
    *, chain_id: str, from_height: int, apply: bool, adapter: ChainAdapter | None = None
) -> utxos_services.RebuildReport:
    """
    Replay blocks from_height..(the scanner's height) and compare the UTXO set with the replay;
    with `apply`, write the differences (missing outputs added or revived, wrong facts rewritten,
    outputs the chain does not hold orphaned). Payout locks are kept. From the scanner's first
    block (SCAN_START_HEIGHTS), it rebuilds the whole set.

    The report's `identical` says whether the stored set already equalled the chain.
    :raises WalletError: the chain keeps no UTXO set, the scanner has not started, or from_height
        is outside what it scanned.
    :raises ChainError: the node failed, or its chain is not the one the scanner holds (a reorg
        the scanner has not seen yet: run it again after the next tick).
    :raises CursorMoved, utxos_services.SetMoved: the scanner wrote meanwhile; run it again.
    """
    if not utxos_selectors.tracks(chain_id=chain_id):
        raise WalletError(f"{chain_id} keeps no UTXO set.", field="chain")
    cursor = ScanCursor.objects.filter(chain_id=chain_id).first()
    if cursor is None:
        raise WalletError(f"The scanner of {chain_id} has not started.", field="chain")
    to_height = cursor.height
    if not 0 <= from_height <= to_height:
        raise WalletError(f"The height must be between 0 and {to_height}, the scanner's height.", field="from_height")
    adapter = adapter or adapter_for(chain_id)
    base = utxos_selectors.utxos_rebuild_base(from_height=from_height)
    owners = utxos_selectors.utxos_owners(chain_id=chain_id, adapter=adapter)
    # Every base output is unspent, or spent from from_height on: the replay decides that again.
    state = {outpoint: facts.unspent() for outpoint, facts in base.items()}
    last_hash: str | None = None
    for first in range(from_height, to_height + 1, READ_CHUNK):
        blocks = adapter.blocks(first, min(first + READ_CHUNK - 1, to_height), watched=owners)
        if last_hash is not None and blocks[0].parent_hash != last_hash:
            raise ChainError(f"{chain_id} node: the chain changed while the blocks were read")
        utxos_replay.replay(state=state, blocks=blocks, owners=owners)
        last_hash = blocks[-1].hash
    assert last_hash is not None
    report = _rebuild_commit(
        chain_id=chain_id,
        expected=(cursor.height, cursor.version),
        tip_hash=last_hash,
        from_height=from_height,
        base=base,
        state=state,
        apply=apply,
    )
    logger.info("%s", report.summary())
    return report


@transaction.atomic(durable=True)
def _rebuild_commit(
    *,
    chain_id: str,
    expected: tuple[int, int],
    tip_hash: str,
    from_height: int,
    base: dict[utxos_replay.Outpoint, utxos_replay.Facts],
    state: dict[utxos_replay.Outpoint, utxos_replay.Facts],
    apply: bool,
) -> utxos_services.RebuildReport:
    cursor = ScanCursor.objects.select_for_update().get(chain_id=chain_id)
    if (cursor.height, cursor.version) != expected:
        raise CursorMoved(f"cursor of {chain_id} moved while the blocks were read")
    stored = RecentBlock.objects.filter(chain_id=chain_id, height=cursor.height).first()
    if stored is None or stored.hash != tip_hash:
        raise ChainError(
            f"{chain_id} node: block {cursor.height} is not the one the scanner holds (a reorg it has not seen yet)"
        )
    return utxos_services.utxos_rebuild_apply(
        from_height=from_height, to_height=cursor.height, base=base, expected=state, apply=apply
    )
