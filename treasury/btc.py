"""
A treasury transfer to cold on BTC, from the UTXO set: the hot address's own outputs are selected
and locked (utxos_select_lock, by this transfer's number) in the transaction that stores the
signed transaction and records the pending spend; change goes back to the same hot address, so the
one key of that address signs every input (the signer signs inputs of one address).
"""

from __future__ import annotations

from datetime import datetime

from addresses import selectors as addresses_selectors
from addresses import signer
from addresses.models import AddressType
from chains.base import ChainAdapter, SignedTx
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from recharges import selectors as recharges_selectors
from treasury.models import TreasuryTransfer
from utxos import selectors as utxos_selectors
from utxos import services as utxos_services
from withdrawals.payout.common import PayoutWaits


def surplus_sats(*, transfer: TreasuryTransfer, coin: CoinConfig, max_units: int | None) -> tuple[int, int]:
    """
    (what the hot address's outputs hold in the UTXO set, the most that may leave it now). Outputs
    a signed payout locked are leaving with it: not counted, or the transfer would take the same
    surplus a second time.
    """
    hot = addresses_selectors.address_find(chain_id=transfer.chain_id, address=transfer.from_address)
    held = utxos_selectors.utxo_free_totals_by_address().get(hot.id, 0) if hot is not None else 0
    return held, (held - max_units if max_units is not None else 0)


def sign_transfer(
    *, transfer: TreasuryTransfer, coin: CoinConfig, adapter: ChainAdapter, now: datetime
) -> tuple[SignedTx, dict[str, int]]:
    """
    Select and lock the hot address's outputs, build, sign and record the pending spend (joins the
    caller's transaction, which stores the signed transaction); return it with its fee terms.

    :raises PayoutWaits: the hot address's free confirmed outputs cannot pay amount and fee, or
        the scanner has not started on BTC.
    """
    hot = addresses_selectors.address_find(chain_id=transfer.chain_id, address=transfer.from_address)
    tip = recharges_selectors.scan_height(chain_id=transfer.chain_id)
    if hot is None or tip is None:
        raise PayoutWaits("the BTC scanner has not started (no UTXO set yet)", alert_kind=None)
    amount = coins_selectors.amount_to_base_units(coin=coin, amount=transfer.amount)
    rate = adapter.fee_estimate()
    try:
        selection = utxos_services.utxos_select_lock(
            wallet_type=hot.wallet_type,
            amount_sats=amount,
            payout_ref=transfer.transfer_no,
            fee_rate_sat_vb=rate,
            tip_height=tip,
            now=now,
            kinds=(AddressType.HOT,),
            address_id=hot.id,
        )
    except utxos_services.UtxoShortfall as short:  # the caller's transaction rolls back with it
        raise PayoutWaits(f"hot address {hot.address}: {short.message}", alert_kind=None) from None
    unsigned = adapter.build_transfer(  # type: ignore[call-arg]
        from_address=hot.address,
        to_address=transfer.to_address,
        amount_base_units=amount,
        utxos=selection.inputs(),
        change_address=hot.address,
        fee_rate_sat_vb=rate,
    )
    signed = signer.signer_for(transfer.chain_id)(unsigned)
    utxos_services.utxos_spend_pending(payout_ref=transfer.transfer_no, txid=signed.tx_hash)
    return signed, {"fee_rate": rate, "fee_sats": selection.fee_sats}
