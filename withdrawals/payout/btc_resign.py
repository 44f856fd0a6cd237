"""
The ops re-sign of a BTC payout whose inputs were spent by another transaction.

A payout's transaction can never be mined once one of its inputs is spent by a transaction it did
not sign (the hot key used outside the wallet, a conflicting spend mined first). The scanner sees
that spend, raises UTXO_SPENT_ELSEWHERE and trips the chain's breaker: the payout is left open,
its withdrawals processing, their amounts frozen. After ops found out why (and reset the
breaker), this re-signs the same payout from other outputs of the pool: same withdrawals, same
output order, a new fee; the dead transactions are recorded as dropped. Never a second payout.

Proven before anything is signed, under the payout's lock: none of the payout's transactions is in
a block (the node says), and an input of its current transaction is spent by another transaction
at least the coin's confirmations deep in the scanner's UTXO set (a reorg shallower than that
cannot bring the old transaction back; the same depth the wallet trusts for deposits).
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from chains import registry as chains_registry
from chains.base import Block, ChainAdapter
from chains.btc import BtcAdapter
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from recharges import selectors as recharges_selectors
from utxos import selectors as utxos_selectors
from utxos import services as utxos_services
from wallet_project.errors import WalletError
from withdrawals import records
from withdrawals.models import (
    PayoutStatus,
    PayoutTx,
    PayoutTxKind,
    PayoutTxStatus,
    PayoutWithdrawal,
    WithdrawRecord,
    WithdrawStatus,
)
from withdrawals.payout import fees
from withdrawals.payout.btc import UTXO_CHAINS, fee_shares, outputs_sign, utxo_ref
from withdrawals.payout.common import in_a_block, live_txs, payable_check, payout_lock, payout_tx_store


class InputsNotProven(WalletError):
    """The node and the UTXO set do not prove (yet) that the payout can never be mined: nothing is re-signed."""

    code = "inputs_not_proven"


@transaction.atomic(durable=True)
def payout_resign_inputs(
    *, withdraw_id: int, operator_id: int, remark: str, now: datetime | None = None, adapter: ChainAdapter | None = None
) -> PayoutTx:
    """
    Re-sign the BTC payout of a withdrawal from other pool outputs once its inputs are proven spent elsewhere.

    The payout's locked outputs are released (those still unspent may be chosen again), new ones
    locked, the same outputs paid at the current fee rate, the fee shared again; the old
    transactions are dropped, and an audit row on every withdrawal of the payout records who, when
    and why. The caller broadcasts the returned transaction after the commit (or the payout job does).
    :raises InputsNotProven: not proven (yet); or the withdrawal is not a processing BTC payout.
    :raises PayoutWaits: a withdrawal of the payout is held, its coin switched off, the chain's
        breaker tripped, the pool short, or the fee above its ceiling: nothing is signed.
    """
    moment = now or timezone.now()
    if not remark.strip():
        raise WalletError("A remark is required to re-sign a payout.", code="remark_required", field="remark")
    link = WithdrawRecord.objects.filter(id=withdraw_id).values_list("payout_link__payout_id", flat=True).first()
    if link is None:
        raise InputsNotProven(f"Withdrawal {withdraw_id} has no payout to re-sign.")
    payout, withdrawals = payout_lock(link)
    if payout.status != PayoutStatus.OPEN or any(r.status != WithdrawStatus.PROCESSING for r in withdrawals):
        raise InputsNotProven(f"Payout {payout.id} is not being paid: nothing to re-sign.")
    if payout.chain_id not in UTXO_CHAINS:
        raise InputsNotProven(f"Payout {payout.id} is not paid from the UTXO set: nothing to re-sign here.")
    adapter = adapter or chains_registry.adapter_for(payout.chain_id)
    assert isinstance(adapter, BtcAdapter)
    links = list(PayoutWithdrawal.objects.filter(payout=payout).select_related("withdraw").order_by("output_index"))
    ordered = [next(r for r in withdrawals if r.id == link.withdraw_id) for link in links]
    ref = utxo_ref(ordered[0].withdraw_no)
    old = list(live_txs(payout))
    tip = recharges_selectors.scan_height(chain_id=payout.chain_id) or 0
    depth = max(r.required_confirmations for r in withdrawals)
    payees = {adapter.match_key(r.to_address): r.withdraw_no for r in ordered}
    proof = _prove_inputs_spent(ref=ref, txs=old, tip=tip, depth=depth, payees=payees, adapter=adapter)
    for record in withdrawals:
        payable_check(record=record)
    rate = fees.btc_fee_rate(adapter.fee_estimate())
    released = utxos_services.utxos_release(payout_ref=ref)
    coin = CoinConfig.objects.get(coin_id=payout.coin_id)
    built = outputs_sign(payable=ordered, coin=coin, adapter=adapter, rate=rate, tip=tip, ref=ref, now=moment)
    PayoutTx.objects.filter(id__in=[tx.id for tx in old]).update(status=PayoutTxStatus.DROPPED)
    current = [tx for tx in old if tx.kind != PayoutTxKind.CPFP_CHILD][-1]
    tx = payout_tx_store(
        payout=payout, unsigned=built.unsigned, signed=built.signed, kind=PayoutTxKind.RESIGN, replaces=current
    )
    utxos_services.utxos_spend_pending(payout_ref=ref, txid=built.signed.tx_hash)
    payout.from_address = built.sender
    payout.save(update_fields=["from_address", "updated_at"])
    shares = fee_shares(fee_sats=built.selection.fee_sats, count=len(links))
    for link_row, share in zip(links, shares, strict=True):
        link_row.fee_share = coins_selectors.amount_from_base_units(coin=coin, base_units=share)
        link_row.save(update_fields=["fee_share"])
    for record in ordered:
        # The withdrawal shows its newest transaction until one is mined.
        record.from_address, record.tx_hash = built.sender, built.signed.tx_hash
        record.save(update_fields=["from_address", "tx_hash", "update_time"])
        records.withdrawal_log(
            record=record,
            auditor_id=operator_id,
            action="resign_inputs",
            to_status=WithdrawStatus.PROCESSING,
            remark=(
                f"{remark.strip()[:300]} | {proof}; {', '.join(t.tx_hash for t in old)} dropped, {released} output(s) "
                f"released; re-signed as {built.signed.tx_hash}: {built.summary(rate)}"
            ),
        )
        records.withdrawal_event(record=record, now=moment)
    return tx


def _prove_inputs_spent(
    *, ref: str, txs: list[PayoutTx], tip: int, depth: int, payees: dict[str, str], adapter: BtcAdapter
) -> str:
    """
    What proves the payout's transactions can never be mined (for the audit row), or InputsNotProven.

    `payees`: {scriptPubKey: withdraw_no} of the payout's outputs. Each foreign spend is checked on
    the node, not only in the scanner's set: its block must still be the node's at that height (a
    reorg the scanner has not read yet may have taken it away, and the old transaction with it back
    to life), and it must pay none of the payout's recipients (the withdrawal paid by hand from the
    hot key: re-signing would pay it twice).
    """
    mined = in_a_block(txs, adapter)
    if mined is not None:
        raise InputsNotProven(mined)
    ours = {tx.tx_hash for tx in txs}
    deep = tip - max(depth, 1) + 1
    spent = [
        row
        for row in utxos_selectors.utxos_of_payout(payout_ref=ref)
        if row.spent_txid is not None and row.spent_txid not in ours and not row.orphaned
    ]
    blocks: dict[int, Block] = {}
    for row in spent:
        assert row.spent_height is not None
        if row.spent_height not in blocks:
            blocks[row.spent_height] = adapter.block(row.spent_height, watched=set(payees))
        block = blocks[row.spent_height]
        if block.hash != row.spent_hash:
            raise InputsNotProven(
                f"The spend of {row.txid}:{row.vout} by {row.spent_txid} was recorded in block {row.spent_height} "
                f"{row.spent_hash}, which is not on the node's best chain any more (the scanner has not read a "
                "reorg yet): the payout's transaction may still be mined. Nothing was re-signed."
            )
        paid = [t for t in block.transfers if t.tx_hash == row.spent_txid and t.match_key in payees]
        if paid:
            raise InputsNotProven(
                f"Transaction {row.spent_txid}, which spent {row.txid}:{row.vout}, pays the address of withdrawal "
                f"{payees[paid[0].match_key]} ({paid[0].amount_base_units} sat): it may have paid it by hand, and "
                "re-signing would pay it twice. Settle this payout by hand. Nothing was re-signed."
            )
    proven = [row for row in spent if row.spent_height is not None and row.spent_height <= deep]
    if not proven:
        seen = (
            f"; {spent[0].txid}:{spent[0].vout} spent by {spent[0].spent_txid} in block {spent[0].spent_height}"
            if spent
            else ""
        )
        raise InputsNotProven(
            f"No input of {ref} is spent by another transaction {depth} confirmations deep (scanner height {tip}"
            f"{seen}): its transaction may still be mined. Nothing was re-signed."
        )
    row = proven[0]
    return f"input {row.txid}:{row.vout} spent by {row.spent_txid} in block {row.spent_height}"
