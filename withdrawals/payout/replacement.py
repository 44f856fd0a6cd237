"""
New transactions for a payout already signed: never a second payout, always another way for the
same one to be mined, kept beside the earlier ones (whichever is mined settles it).

- EVM, stuck: unmined past WITHDRAW_STUCK_SECONDS, the current transaction is replaced by one with
  the same nonce and both fee fields raised (fees.evm_bumped_terms), within the fee ceiling.
- EVM, nonce taken (ops action payout_resign_nonce): once the node proves that the nonce is used
  by a transaction mined at the withdrawal's confirmations depth and that none of the payout's
  transactions is in a block, a transaction with a new nonce; the old ones are dropped.
- TRON, expired: once solidified blocks prove the current transaction can never be included, a
  new one; the old one is dropped.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from addresses import signer
from chains import registry as chains_registry
from chains import services as chains_services
from chains.base import ChainAdapter, SignedTx
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from monitoring.models import Severity
from wallet_project.errors import WalletError
from withdrawals import records
from withdrawals.models import (
    Payout,
    PayoutStatus,
    PayoutTx,
    PayoutTxKind,
    PayoutTxStatus,
    WithdrawRecord,
    WithdrawStatus,
)
from withdrawals.payout import btc_resign, fees
from withdrawals.payout.broadcast import broadcast
from withdrawals.payout.btc import UTXO_CHAINS
from withdrawals.payout.common import (
    NODE_ERRORS,
    NONCE_CHAINS,
    PayoutWaits,
    alert,
    in_a_block,
    label,
    live_txs,
    payable_check,
    payout_lock,
    payout_tx_store,
    step,
    waiting,
)
from withdrawals.payout.transfer import sign_transfer


class NonceNotProven(WalletError):
    """The node does not prove (yet) that the payout's nonce is taken for good: nothing is re-signed."""

    code = "nonce_not_proven"


# --- EVM: a stuck transaction replaced (same nonce, higher fee) ----------------------------------
def evm_replace(*, payout: Payout, tx: PayoutTx, adapter: ChainAdapter, now: datetime) -> bool:
    """Replace a stuck EVM transaction and send the replacement; False (alerted) when it cannot be."""
    try:
        market = adapter.fee_market()  # type: ignore[attr-defined]  # before the lock
        replaced = _evm_replace(payout_id=payout.id, tx_id=tx.id, adapter=adapter, market=market, now=now)
    except fees.FeeCeiling as exc:
        alert(
            severity=Severity.CRITICAL,
            kind="WITHDRAW_STUCK",
            subject=label(payout),
            text=f"{label(payout)} (payout {payout.id}) is stuck and cannot be replaced: {exc.message}",
        )
        return False
    except (WalletError, *NODE_ERRORS) as exc:
        alert(
            severity=Severity.CRITICAL,
            kind="WITHDRAW_STUCK",
            subject=label(payout),
            text=f"{label(payout)} (payout {payout.id}) is stuck; replacing it failed: {str(exc)[:300]}",
        )
        return False
    if replaced is None:
        return False  # settled or replaced by another worker meanwhile
    step("replace.signed")
    broadcast(tx=replaced, adapter=adapter, now=now)
    alert(
        severity=Severity.WARNING,
        kind="WITHDRAW_REPLACED",
        subject=label(payout),
        text=(
            f"{label(payout)} (payout {payout.id}) was not mined in {settings.WITHDRAW_STUCK_SECONDS} s: its "
            f"transaction is replaced by one with the same nonce {replaced.nonce} and {_fee_text(replaced)}; "
            "whichever is mined completes the withdrawal, the other is recorded as dropped"
        ),
    )
    return True


def _fee_text(tx: PayoutTx) -> str:
    if tx.max_fee_per_gas is not None:
        return f"max fee {tx.max_fee_per_gas} wei, priority fee {tx.max_priority_fee_per_gas} wei per gas"
    return f"gas price {tx.gas_price} wei"


@transaction.atomic(durable=True)
def _evm_replace(
    *, payout_id: int, tx_id: int, adapter: ChainAdapter, market: object, now: datetime
) -> PayoutTx | None:
    payout, withdrawals = payout_lock(payout_id)
    current = live_txs(payout).last()
    if payout.status != PayoutStatus.OPEN or current is None or current.id != tx_id or len(withdrawals) != 1:
        return None
    [record] = withdrawals
    terms = fees.evm_bumped_terms(current, market)  # type: ignore[arg-type]
    coin = CoinConfig.objects.get(coin_id=payout.coin_id)
    unsigned = adapter.build_transfer(
        from_address=payout.from_address,
        to_address=record.to_address,
        amount_base_units=_amount(record=record, coin=coin),
        contract=None if coins_selectors.coin_is_native(coin=coin) else coin.contract_address,
        nonce=payout.nonce,
        gas_limit=current.gas_limit,
        **terms,
    )
    # Not checked against the balance: the node takes a replacement only if the sender can pay it,
    # and the transaction it replaces stays valid meanwhile.
    signed = signer.signer_for(payout.chain_id)(unsigned)
    replaced = payout_tx_store(
        payout=payout, unsigned=unsigned, signed=signed, kind=PayoutTxKind.REPLACEMENT, replaces=current
    )
    _current_hash(record=record, tx_hash=signed.tx_hash)
    records.withdrawal_log(
        record=record,
        auditor_id=None,
        action="replace",
        to_status=WithdrawStatus.PROCESSING,
        remark=f"stuck {current.tx_hash} replaced by {signed.tx_hash}, nonce {payout.nonce}, {_fee_text(replaced)}",
    )
    return replaced


def _amount(*, record: WithdrawRecord, coin: CoinConfig) -> int:
    return coins_selectors.amount_to_base_units(coin=coin, amount=record.actual_amount)


def _current_hash(*, record: WithdrawRecord, tx_hash: str) -> None:
    """The withdrawal shows its newest transaction until one is mined."""
    record.tx_hash = tx_hash
    record.save(update_fields=["tx_hash", "update_time"])


# --- The ops re-sign: EVM with a new nonce once the old one is taken for good; BTC see btc_resign --
def payout_resign(*, withdraw_id: int, operator_id: int, remark: str, adapter: ChainAdapter | None = None) -> PayoutTx:
    """
    The ops re-sign of a payout that provably can never be mined: an EVM nonce taken by another
    transaction (payout_resign_nonce), BTC inputs spent by another transaction
    (btc_resign.payout_resign_inputs). The caller broadcasts the result (payout_resign_broadcast).
    :raises WalletError: not proven, not a processing payout, or something makes it wait (nothing signed).
    """
    chain_id = WithdrawRecord.objects.filter(id=withdraw_id).values_list("coin__chain_id", flat=True).first()
    if chain_id in UTXO_CHAINS:
        return btc_resign.payout_resign_inputs(
            withdraw_id=withdraw_id, operator_id=operator_id, remark=remark, adapter=adapter
        )
    return payout_resign_nonce(withdraw_id=withdraw_id, operator_id=operator_id, remark=remark, adapter=adapter)


@transaction.atomic(durable=True)
def payout_resign_nonce(
    *, withdraw_id: int, operator_id: int, remark: str, now: datetime | None = None, adapter: ChainAdapter | None = None
) -> PayoutTx:
    """
    Re-sign the payout of a withdrawal with a new nonce, after the node proves the old one cannot be mined.

    Under the withdrawal's lock the node is asked again: the hot address's transactions mined at the
    withdrawal's confirmations depth have used the payout's nonce, and none of the payout's
    transactions is in a block. Then a new transaction (new nonce, current fees, the hot address's
    balance checked) is stored, the old ones are dropped, and an audit row records who, when and why.
    The caller broadcasts it (payout_resign_broadcast), or the next payout run does.
    :raises NonceNotProven: not proven (yet); or the withdrawal is not a processing EVM payout.
    :raises PayoutWaits: the user is held, the coin switched off, the hot address short or the fee
        above its ceiling: nothing is signed.
    """
    moment = now or timezone.now()
    if not remark.strip():
        raise WalletError("A remark is required to re-sign a payout.", code="remark_required", field="remark")
    link = WithdrawRecord.objects.filter(id=withdraw_id).values_list("payout_link__payout_id", flat=True).first()
    if link is None:
        raise NonceNotProven(f"Withdrawal {withdraw_id} has no payout to re-sign.")
    payout, withdrawals = payout_lock(link)
    [record] = withdrawals
    if record.status != WithdrawStatus.PROCESSING or payout.status != PayoutStatus.OPEN:
        raise NonceNotProven(f"Withdrawal {record.withdraw_no} is not being paid: nothing to re-sign.")
    if payout.chain_id not in NONCE_CHAINS or payout.nonce is None:
        raise NonceNotProven(f"Withdrawal {record.withdraw_no} is not paid with a nonce: nothing to re-sign.")
    adapter = adapter or chains_registry.adapter_for(payout.chain_id)
    old = list(live_txs(payout))
    _prove_nonce_taken(payout=payout, txs=old, depth=record.required_confirmations, adapter=adapter)
    payable_check(record=record)
    terms = fees.evm_terms(adapter.fee_market())  # type: ignore[attr-defined]
    coin = CoinConfig.objects.get(coin_id=payout.coin_id)
    nonce = chains_services.nonce_allocate(
        chain_id=payout.chain_id,
        address=payout.from_address,
        node_next=adapter.next_nonce(payout.from_address),  # type: ignore[attr-defined]
    )
    unsigned, signed = sign_transfer(
        record=record,
        coin=coin,
        adapter=adapter,
        from_address=payout.from_address,
        nonce=nonce,
        terms=terms,
        payout=payout,
    )
    PayoutTx.objects.filter(id__in=[tx.id for tx in old]).update(status=PayoutTxStatus.DROPPED)
    previous = payout.nonce
    payout.nonce = nonce
    payout.save(update_fields=["nonce", "updated_at"])
    tx = payout_tx_store(payout=payout, unsigned=unsigned, signed=signed, kind=PayoutTxKind.RESIGN, replaces=old[-1])
    _current_hash(record=record, tx_hash=signed.tx_hash)
    records.withdrawal_log(
        record=record,
        auditor_id=operator_id,
        action="resign_nonce",
        to_status=WithdrawStatus.PROCESSING,
        remark=(
            f"{remark.strip()[:300]} | nonce {previous} was taken; {', '.join(t.tx_hash for t in old)} dropped; "
            f"re-signed as {signed.tx_hash} with nonce {nonce}"
        ),
    )
    records.withdrawal_event(record=record, now=moment)
    return tx


def _prove_nonce_taken(*, payout: Payout, txs: list[PayoutTx], depth: int, adapter: ChainAdapter) -> None:
    assert payout.nonce is not None
    height = adapter.tip_height() - max(depth, 1) + 1
    used = adapter.mined_count(payout.from_address, height=height)  # type: ignore[attr-defined]
    if used <= payout.nonce:
        raise NonceNotProven(
            f"Nonce {payout.nonce} of {payout.from_address} is not used at block {height} ({depth} confirmations "
            f"deep; {used} transactions mined there): its transaction may still be mined. Nothing was re-signed."
        )
    mined = in_a_block(txs, adapter)
    if mined is not None:
        raise NonceNotProven(mined)


def payout_resign_broadcast(*, tx: PayoutTx, adapter: ChainAdapter | None = None) -> int:
    """Send a transaction payout_resign_nonce stored (after its commit); 1 if the node has it now."""
    tx = PayoutTx.objects.select_related("payout").get(id=tx.id)
    adapter = adapter or chains_registry.adapter_for(tx.payout.chain_id)
    return broadcast(tx=tx, adapter=adapter, now=timezone.now())


# --- TRON: an expired transaction signed again -----------------------------------------------------
def tron_never_included(*, tx: PayoutTx, adapter: ChainAdapter) -> bool:
    """Whether the stored TRON transaction is in no solid block and, past its expiry, never will be."""
    from withdrawals import payout as package

    try:
        return adapter.never_included(  # type: ignore[attr-defined]
            SignedTx(tx_hash=tx.tx_hash, raw=tx.raw), margin_ms=package.TRON_EXPIRY_MARGIN_MS
        )
    except (KeyError, TypeError, ValueError):
        return False


def tron_resign(*, payout: Payout, tx: PayoutTx, adapter: ChainAdapter, now: datetime) -> None:
    """Sign an expired, never-included TRON payout again and send it; alerted when it must wait."""
    try:
        resigned = _tron_resign(payout_id=payout.id, tx_id=tx.id, adapter=adapter, now=now)
    except PayoutWaits as exc:  # held, switched off, the hot wallet short: the next run tries again
        waiting(exc=exc, subject=label(payout))
        return
    except WalletError as exc:  # e.g. the signer refuses: the next run tries again
        alert(
            severity=Severity.WARNING,
            kind="WITHDRAW_SIGN_FAILED",
            subject=label(payout),
            text=f"signing {label(payout)} again failed: {str(exc)[:200]}",
        )
        return
    if resigned is not None:
        broadcast(tx=resigned, adapter=adapter, now=now)


@transaction.atomic(durable=True)
def _tron_resign(*, payout_id: int, tx_id: int, adapter: ChainAdapter, now: datetime) -> PayoutTx | None:
    payout, withdrawals = payout_lock(payout_id)
    current = live_txs(payout).last()
    if payout.status != PayoutStatus.OPEN or current is None or current.id != tx_id or len(withdrawals) != 1:
        return None  # settled, or signed again by another worker meanwhile
    [record] = withdrawals
    payable_check(record=record)
    if not tron_never_included(tx=current, adapter=adapter):
        return None  # undecided after all: it is followed as usual
    coin = CoinConfig.objects.get(coin_id=payout.coin_id)
    unsigned, signed = sign_transfer(
        record=record, coin=coin, adapter=adapter, from_address=payout.from_address, nonce=None, terms={}, payout=payout
    )
    PayoutTx.objects.filter(id=current.id).update(status=PayoutTxStatus.DROPPED)
    resigned = payout_tx_store(
        payout=payout, unsigned=unsigned, signed=signed, kind=PayoutTxKind.RESIGN, replaces=current
    )
    _current_hash(record=record, tx_hash=signed.tx_hash)
    records.withdrawal_log(
        record=record,
        auditor_id=None,
        action="resign",
        to_status=WithdrawStatus.PROCESSING,
        remark=f"from {payout.from_address}, replacing expired {current.tx_hash}",
    )
    return resigned
