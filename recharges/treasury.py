"""
Treasury receipts: money arriving from outside the exchange at its own non-deposit addresses.

The scanner watches the exchange's hot, gas-station, change and cold addresses besides the deposit
addresses (recharges.watchlist). A successful transfer of a configured coin to one of them is:

- internal when it comes from the exchange itself: on an account chain (ETH, TRON) its sender is
  one of the exchange's addresses (a sweep, a gas top-up, a hot/cold transfer); on BTC the
  transaction spends one of the exchange's outputs (a payout's change, a consolidation). Nothing
  is recorded: no money entered the exchange (the mover books its own network fee);
- a treasury receipt otherwise (ops topping a hot wallet up from outside, the development set-up
  funding its hot wallets): recorded PENDING in the transaction that stores its block, booked to
  the house account `treasury` (HOUSE_TREASURY_IN) at the coin's confirmations on a block still
  canonical, and reversed (the same type, negative, its own reference) if a reorg orphans it after.

Never a user's credit: these addresses belong to no user.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from assets import house as assets_house
from assets.models import BusinessType, HouseAccount
from chains.base import Block, ChainAdapter, ChainError
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from recharges import matching
from recharges.models import RecentBlock, TreasuryReceipt, TreasuryStatus
from utxos import selectors as utxos_selectors
from wallet_project.db import rows_insert_ignoring_conflicts
from wallet_project.errors import WalletError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiptCandidate:
    coin_id: str
    tx_hash: str
    index: int
    from_address: str
    to_address: str
    amount_base_units: int
    block_number: int
    block_hash: str


def receipts_match(
    *, blocks: Sequence[Block], watch: matching.Watch, rules: matching.CoinRules, adapter: ChainAdapter
) -> list[ReceiptCandidate]:
    """
    Return the transfers of the blocks to the exchange's own non-deposit addresses that do not come
    from an exchange address (as far as the sender is known here: BTC's is settled by receipts_record).

    Pure CPU, no database.
    """
    found: list[ReceiptCandidate] = []
    for block in blocks:
        for transfer in block.transfers:
            owner = watch.get(transfer.match_key)
            if owner is None or owner[0] is not None or not transfer.success or transfer.amount_base_units <= 0:
                continue
            coin_id, _ = matching.coin_of(transfer=transfer, rules=rules, contract_key=adapter.match_key)
            if coin_id is None:
                continue
            if transfer.from_address:
                try:
                    sender = adapter.match_key(transfer.from_address)
                except (ChainError, ValueError, TypeError):
                    sender = ""
                if sender in watch:
                    continue  # one of ours paid it: internal
            found.append(
                ReceiptCandidate(
                    coin_id=coin_id,
                    tx_hash=transfer.tx_hash,
                    index=transfer.index,
                    from_address=transfer.from_address[:255],
                    to_address=owner[1],
                    amount_base_units=transfer.amount_base_units,
                    block_number=block.number,
                    block_hash=block.hash,
                )
            )
    return found


@transaction.atomic(savepoint=False)
def receipts_record(
    *, chain_id: str, coin_ids: Sequence[str], blocks: Sequence[Block], candidates: Sequence[ReceiptCandidate]
) -> int:
    """
    Record the candidates of consecutive blocks as PENDING receipts, in the scanner's block transaction.

    Receipts already live at these heights from another block are orphaned first; one orphaned
    before and found again is revived as a new generation. On BTC a transaction that spends one
    of our outputs (recorded by the UTXO set in this same transaction, before this call) is ours:
    skipped. Idempotent. Returns the receipts added or revived.
    """
    if not blocks:
        return 0
    hashes = {block.number: block.hash for block in blocks}
    live = TreasuryReceipt.objects.select_for_update().filter(
        coin_id__in=list(coin_ids),
        block_number__gte=blocks[0].number,
        block_number__lte=blocks[-1].number,
        status__in=(TreasuryStatus.PENDING, TreasuryStatus.BOOKED),
    )
    for receipt in live.order_by("id"):
        if hashes.get(receipt.block_number) != receipt.block_hash:
            receipt_orphan(receipt=receipt)
    if utxos_selectors.tracks(chain_id=chain_id) and candidates:
        ours = utxos_selectors.txids_spending_ours(txids=[c.tx_hash for c in candidates])
        candidates = [c for c in candidates if c.tx_hash not in ours]
    if not candidates:
        return 0
    coins = {c.coin_id: c for c in CoinConfig.objects.filter(coin_id__in={c.coin_id for c in candidates})}
    rows = [
        TreasuryReceipt(
            coin_id=c.coin_id,
            tx_hash=c.tx_hash,
            log_index=c.index,
            from_address=c.from_address,
            to_address=c.to_address,
            amount=coins_selectors.amount_from_base_units(coin=coins[c.coin_id], base_units=c.amount_base_units),
            block_number=c.block_number,
            block_hash=c.block_hash,
        )
        for c in candidates
    ]
    added = rows_insert_ignoring_conflicts(rows)
    # Found again after a reorg orphaned it: the same row, a new generation, in its new block, with
    # what the key carries there (a contract's payment re-executed, a shifted ERC20 log index may
    # carry another amount or address: recharges.services._record_content_set).
    revived = 0
    for c, row in zip(candidates, rows, strict=True):
        revived += TreasuryReceipt.objects.filter(
            coin_id=c.coin_id, tx_hash=c.tx_hash, log_index=c.index, status=TreasuryStatus.REORGED
        ).update(
            status=TreasuryStatus.PENDING,
            block_number=c.block_number,
            block_hash=c.block_hash,
            generation=F("generation") + 1,
            book_time=None,
            amount=row.amount,
            from_address=row.from_address,
            to_address=row.to_address,
        )
    return (added if isinstance(added, int) else 0) + revived


def receipt_orphan(*, receipt: TreasuryReceipt) -> None:
    """Mark a (locked) receipt REORGED; a booked one has its booking reversed."""
    if receipt.status == TreasuryStatus.BOOKED:
        assets_house.house_book(
            coin=CoinConfig.objects.get(coin_id=receipt.coin_id),
            account=HouseAccount.TREASURY,
            amount=-receipt.amount,
            business_type=BusinessType.HOUSE_TREASURY_IN,
            biz_ref=f"{receipt.biz_ref}-reorg",
            ref_tx_hash=receipt.tx_hash,
            memo=f"treasury receipt {receipt.tx_hash}:{receipt.log_index} orphaned by a reorg",
        )
    receipt.status = TreasuryStatus.REORGED
    receipt.save(update_fields=["status", "update_time"])


@transaction.atomic(savepoint=False)
def receipts_orphan_above(*, coin_ids: Sequence[str], fork: int, node_hashes: dict[int, str]) -> int:
    """Orphan the live receipts above a reorg's fork point whose block the node no longer has."""
    orphaned = 0
    live = TreasuryReceipt.objects.select_for_update().filter(
        coin_id__in=list(coin_ids),
        block_number__gt=fork,
        status__in=(TreasuryStatus.PENDING, TreasuryStatus.BOOKED),
    )
    for receipt in live.order_by("id"):
        if node_hashes.get(receipt.block_number) == receipt.block_hash:
            continue
        receipt_orphan(receipt=receipt)
        orphaned += 1
    return orphaned


def receipts_book(*, chain_id: str, coins: dict[str, CoinConfig], cursor_height: int, tip: int) -> int:
    """
    Book each PENDING receipt of the chain at its coin's confirmations (counted from `tip`) whose
    block is the one the scanner stores at that height. A reorg the scanner finds later orphans it
    and books the reversal, as for any receipt. One transaction per receipt. Returns how many were
    booked.
    """
    due = [
        (receipt_id, coin_id, height, block_hash)
        for receipt_id, coin_id, height, block_hash in TreasuryReceipt.objects.filter(
            coin_id__in=list(coins), status=TreasuryStatus.PENDING, block_number__lte=cursor_height
        )
        .order_by("id")
        .values_list("id", "coin_id", "block_number", "block_hash")
        if tip - height + 1 >= coins[coin_id].required_confirmations
    ]
    if not due:
        return 0
    stored = dict(
        RecentBlock.objects.filter(chain_id=chain_id, height__in={row[2] for row in due}).values_list("height", "hash")
    )
    booked = 0
    for receipt_id, coin_id, height, block_hash in due:
        if stored.get(height, block_hash) != block_hash:
            continue  # the scanner will orphan it
        try:
            booked += _book(receipt_id=receipt_id, block_hash=block_hash, coin=coins[coin_id])
        except (WalletError, IntegrityError):
            # It stays PENDING (reconciliation counts it in flight) and is retried every tick; the
            # other receipts go on.
            logger.exception("treasury receipt %s could not be booked", receipt_id)
    return booked


@transaction.atomic(durable=True)
def _book(*, receipt_id: int, block_hash: str, coin: CoinConfig) -> int:
    receipt = TreasuryReceipt.objects.select_for_update().get(id=receipt_id)
    if receipt.status != TreasuryStatus.PENDING or receipt.block_hash != block_hash:
        return 0
    assets_house.house_book(
        coin=coin,
        account=HouseAccount.TREASURY,
        amount=receipt.amount,
        business_type=BusinessType.HOUSE_TREASURY_IN,
        biz_ref=receipt.biz_ref,
        ref_tx_hash=receipt.tx_hash,
        memo=f"treasury receipt to {receipt.to_address}"[:255],
    )
    receipt.status = TreasuryStatus.BOOKED
    receipt.book_time = timezone.now()
    receipt.save(update_fields=["status", "book_time", "update_time"])
    logger.info("treasury receipt %s:%s of %s booked", receipt.tx_hash, receipt.log_index, coin.coin_id)
    return 1


def receipts_forget(*, coin_ids: Sequence[str]) -> int:
    """A dev chain that came back new: its pending receipts' blocks are gone."""
    return TreasuryReceipt.objects.filter(coin_id__in=list(coin_ids), status=TreasuryStatus.PENDING).update(
        status=TreasuryStatus.REORGED
    )
