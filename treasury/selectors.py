"""Reads of the treasury: hot thresholds, open transfers, and the hot balances they are compared with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet

from addresses.models import AddressStatus, WalletAddress
from coins import selectors as coins_selectors
from monitoring import selectors as monitoring_selectors
from treasury.models import OPEN_STATUSES, HotThreshold, TransferStatus, TreasuryTransfer
from utxos import selectors as utxos_selectors


@dataclass(frozen=True)
class HotPosition:
    """A hot address's balance of a coin as last read from its chain, beside its limits."""

    address: WalletAddress
    coin_id: str
    balance: Decimal | None  # None: unknown (never read, the last read failed, or too old)
    min_balance: Decimal | None
    max_balance: Decimal | None
    read_at: datetime | None = None  # when the balance was read (UTXO chains: now)

    @property
    def subject(self) -> str:
        return f"{self.coin_id} {self.address.address}"


def thresholds(*, chain_id: str | None = None) -> QuerySet[HotThreshold]:
    """Return the hot thresholds (of one chain), with their address and coin."""
    rows = HotThreshold.objects.select_related("address", "coin")
    if chain_id is not None:
        rows = rows.filter(address__chain_id=chain_id)
    return rows.order_by("address_id", "coin_id")


def hot_positions(*, chain_id: str, now: datetime) -> list[HotPosition]:
    """
    Return every threshold of the chain's enabled hot addresses with the balance last read.

    A reading older than three refresh periods is unknown: a stale number neither raises an alert
    nor moves money. On a UTXO chain (BTC) the balance is the address's outputs in the UTXO set.
    """
    fresh_after = now - timedelta(seconds=3 * settings.HOT_BALANCE_REFRESH_SECONDS)
    utxo_chain = utxos_selectors.tracks(chain_id=chain_id)
    readings = {} if utxo_chain else {(r.address, r.coin_id): r for r in monitoring_selectors.hot_balance_list()}
    # Outputs locked by a signed payout (or transfer) are leaving: what stays is the free ones.
    sats = utxos_selectors.utxo_free_totals_by_address() if utxo_chain else {}
    positions = []
    for row in thresholds(chain_id=chain_id).filter(address__status=AddressStatus.NORMAL):
        balance: Decimal | None
        read_at: datetime | None = now
        if utxo_chain:
            balance = coins_selectors.amount_from_base_units(coin=row.coin, base_units=sats.get(row.address_id, 0))
        else:
            reading = readings.get((row.address.address, row.coin_id))
            known = reading is not None and reading.balance is not None and reading.read_at >= fresh_after
            balance = reading.balance if known else None  # type: ignore[union-attr]
            read_at = reading.read_at if known else None  # type: ignore[union-attr]
        positions.append(
            HotPosition(
                address=row.address,
                coin_id=row.coin_id,
                balance=balance,
                min_balance=row.min_balance,
                max_balance=row.max_balance,
                read_at=read_at,
            )
        )
    return positions


def transfer_open(*, coin_id: str, from_address: str) -> TreasuryTransfer | None:
    return (
        TreasuryTransfer.objects.filter(coin_id=coin_id, from_address=from_address, status__in=OPEN_STATUSES)
        .order_by("id")
        .first()
    )


def transfers_in_flight(*, chain_id: str) -> QuerySet[TreasuryTransfer]:
    """Transfers signed but not settled: what the chain's hot addresses have promised to cold."""
    return TreasuryTransfer.objects.filter(chain_id=chain_id, status__in=OPEN_STATUSES[2:]).order_by("id")


def transfer_last_finished_at(
    *, coin_id: str, from_address: str, status: TransferStatus = TransferStatus.CONFIRMED
) -> datetime | None:
    """When the last transfer of the coin from this address that ended in status ended (None: never)."""
    return (
        TreasuryTransfer.objects.filter(coin_id=coin_id, from_address=from_address, status=status)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )


def transfer_status(*, transfer_no: str) -> str | None:
    """Return the transfer's status, or None when there is no such transfer."""
    return TreasuryTransfer.objects.filter(transfer_no=transfer_no).values_list("status", flat=True).first()


# (what, tx_hash, stored fee or None, block number or None) of one transfer's transaction.
FeeTx = tuple[str, str, Decimal | None, int | None]


def fees_unbooked(*, chain_id: str) -> list[FeeTx]:
    """
    Return the chain's signed or sent transfers, whose network fee is booked only at confirmation.
    Whether one is mined the caller asks the node. The stored fee: BTC's, known at signing.
    """
    native = coins_selectors.chain_native_coin(chain_id=chain_id)
    rows = TreasuryTransfer.objects.filter(
        chain_id=chain_id, status__in=(TransferStatus.SIGNED, TransferStatus.BROADCAST), tx_hash__isnull=False
    )
    found: list[FeeTx] = []
    for transfer_no, tx_hash, terms, block in rows.order_by("id").values_list(
        "transfer_no", "tx_hash", "fee_terms", "block_number"
    ):
        sats = (terms or {}).get("fee_sats")
        stored = coins_selectors.amount_from_base_units(coin=native, base_units=int(sats)) if sats else None
        found.append((f"treasury transfer {transfer_no}", tx_hash, stored, block))
    return found


def fees_booked_above(*, chain_id: str, height: int) -> list[FeeTx]:
    """Return the chain's settled transfers with a booked fee mined in a block above `height`."""
    rows = TreasuryTransfer.objects.filter(
        chain_id=chain_id,
        status__in=(TransferStatus.CONFIRMED, TransferStatus.FAILED),
        fee__isnull=False,
        block_number__gt=height,
    )
    return [
        (f"treasury transfer {transfer_no}", tx_hash or "", fee, block)
        for transfer_no, tx_hash, fee, block in rows.order_by("id").values_list(
            "transfer_no", "tx_hash", "fee", "block_number"
        )
    ]
