"""
Confirmation: follow every open payout until one of its transactions settles it.

Per payout, each transaction that may still be mined is looked up. One in a block is recorded
(payout_tx MINED, and the withdrawal's tx_hash / block_number show it); at the coin's confirmations,
on a block the node still has, it settles the payout: paid as expected (success, and for a token
the Transfer log from the hot address to the recipient of the amount) → completed; reverted, or a
token that reported success without moving the tokens → failed and unfrozen, with an alert. Its
siblings are recorded as dropped then. With none in a block the current transaction is sent again
where the node lost it, a stuck EVM one is replaced, a taken nonce is alerted, an expired TRON one
is signed again.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from assets import services as assets_services
from assets.models import BusinessType
from chains import registry as chains_registry
from chains.base import ChainAdapter, TxStatus
from coins import selectors as coins_selectors
from controls import breakers as controls_breakers
from controls.models import BreakerSource
from monitoring import services as monitoring_services
from monitoring.models import Severity
from withdrawals import records
from withdrawals.models import (
    Payout,
    PayoutStatus,
    PayoutTx,
    PayoutTxKind,
    PayoutTxStatus,
    PayoutWithdrawal,
    WithdrawRecord,
    WithdrawStatus,
)
from withdrawals.payout import btc, replacement
from withdrawals.payout.broadcast import broadcast
from withdrawals.payout.common import (
    LIVE_TX,
    NODE_ERRORS,
    NONCE_CHAINS,
    ONCHAIN_CHAINS,
    PayoutResult,
    alert,
    label,
    native_coin,
    open_payouts,
    payout_lock,
    step,
)

PAID, REVERTED, NOT_PAID = "paid", "reverted", "not_paid"


def withdrawals_confirm(
    *, chain_id: str, now: datetime | None = None, adapter: ChainAdapter | None = None
) -> PayoutResult:
    """
    Follow the chain's open payouts: complete the paid ones, fail the others, remedy the unmined.

    A success that paid as expected settles the frozen amount (WITHDRAW_SETTLE); a revert, or a
    token transfer without its Transfer log, unfreezes it (WITHDRAW_UNFREEZE; the hot address paid
    the gas). A transaction unmined past WITHDRAW_STUCK_SECONDS is replaced on EVM (same nonce,
    higher fee), bumped by a CPFP child on BTC, and alerted.
    """
    moment = now or timezone.now()
    if chain_id not in ONCHAIN_CHAINS:
        return PayoutResult(chain_id=chain_id)
    adapter = adapter or chains_registry.adapter_for(chain_id)
    counts: Counter[str] = Counter()
    mined_nonces: dict[str, int] = {}
    try:
        tip = adapter.tip_height()
        for payout in open_payouts(chain_id=chain_id).iterator(chunk_size=200):
            counts[_follow(payout=payout, adapter=adapter, tip=tip, mined_nonces=mined_nonces, now=moment)] += 1
    except NODE_ERRORS as exc:
        text = f"confirming withdrawals failed: {type(exc).__name__}: {str(exc)[:200]}"
        alert(severity=Severity.WARNING, kind="NODE_DOWN", subject=f"chain {chain_id}", text=text)
        return _result(chain_id, counts, error=text)
    return _result(chain_id, counts)


def _result(chain_id: str, counts: Counter[str], error: str | None = None) -> PayoutResult:
    return PayoutResult(
        chain_id=chain_id,
        completed=counts["completed"],
        failed=counts["failed"],
        waiting=counts["waiting"] + counts["replaced"],
        replaced=counts["replaced"],
        error=error,
    )


def _follow(*, payout: Payout, adapter: ChainAdapter, tip: int, mined_nonces: dict[str, int], now: datetime) -> str:
    """One open payout, one step further; what happened: completed, failed, replaced or waiting."""
    txs = list(payout.txs.filter(status__in=LIVE_TX).order_by("id"))
    if not txs:
        return "waiting"
    used = None
    if payout.chain_id in NONCE_CHAINS:
        # Read before the receipts: a transaction of ours mined in between then shows as mined, and
        # a count past our nonce with none of ours in a block means another transaction took it.
        if payout.from_address not in mined_nonces:
            mined_nonces[payout.from_address] = adapter.mined_count(payout.from_address)  # type: ignore[attr-defined]
        used = mined_nonces[payout.from_address]
    statuses = {tx.id: adapter.tx_status(tx.tx_hash) for tx in txs}
    for tx in txs:
        _mined_at(tx=tx, status=statuses[tx.id])
    # A CPFP child (BTC) is mined with or after its parent and never settles the payout itself.
    mined = sorted(
        (tx for tx in txs if statuses[tx.id].block_number is not None and tx.kind != PayoutTxKind.CPFP_CHILD),
        key=lambda t: statuses[t.id].block_number or 0,
    )
    if mined:
        return _settle_when_confirmed(
            payout=payout, tx=mined[0], status=statuses[mined[0].id], adapter=adapter, tip=tip, now=now
        )
    # A CPFP child is never the current transaction: its parent is (re-sent first, then the child).
    parents = [tx for tx in txs if tx.kind != PayoutTxKind.CPFP_CHILD]
    current = parents[-1] if parents else txs[-1]
    if used is not None and payout.nonce is not None and used > payout.nonce:
        _nonce_taken_alert(payout=payout, txs=txs, used=used)
        _nonce_taken_trip(payout=payout, now=now)
        return "waiting"
    if (
        payout.chain_id not in NONCE_CHAINS
        and payout.chain_id not in btc.UTXO_CHAINS
        and not statuses[current.id].found
        and replacement.tron_never_included(tx=current, adapter=adapter)
    ):
        replacement.tron_resign(payout=payout, tx=current, adapter=adapter, now=now)
        return "waiting"
    if not statuses[current.id].found:
        # Never taken, or lost by the node (a reorg took it out of its block, a restarted mempool).
        broadcast(tx=current, adapter=adapter, now=now)
    for child in txs:
        if child.kind == PayoutTxKind.CPFP_CHILD and not statuses[child.id].found:
            broadcast(tx=child, adapter=adapter, now=now)  # after its parent, which it spends
    started = current.broadcast_at or current.created_at
    if (now - started).total_seconds() <= settings.WITHDRAW_STUCK_SECONDS:
        return "waiting"
    if payout.chain_id in NONCE_CHAINS:
        # Replaced, or alerted as stuck with the reason it cannot be replaced (the fee ceiling).
        return "replaced" if replacement.evm_replace(payout=payout, tx=current, adapter=adapter, now=now) else "waiting"
    if payout.chain_id in btc.UTXO_CHAINS:
        # Bumped by a child spending its change (bcoin, like many nodes, refuses replace-by-fee).
        return "replaced" if btc.btc_bump(payout=payout, parent=current, adapter=adapter, now=now) else "waiting"
    alert(
        severity=Severity.CRITICAL,
        kind="WITHDRAW_STUCK",
        subject=label(payout),
        text=f"{label(payout)} (payout {payout.id}) is not mined after {settings.WITHDRAW_STUCK_SECONDS} s",
    )
    return "waiting"


def _mined_at(*, tx: PayoutTx, status: TxStatus) -> None:
    """
    Keep the block the node shows a transaction in (MINED), or put it back (BROADCAST) when a reorg
    took it out; the payout's withdrawals show the mined one (tx_hash, block_number).

    Conditional statements without the row lock: they change nothing once the payout was settled
    or its transaction dropped meanwhile.
    """
    number = status.block_number
    if number is not None and (tx.status != PayoutTxStatus.MINED or tx.block_number != number):
        PayoutTx.objects.filter(id=tx.id, status__in=LIVE_TX).update(
            status=PayoutTxStatus.MINED, block_number=number, block_hash=status.block_hash
        )
        WithdrawRecord.objects.filter(payout_link__payout_id=tx.payout_id, status=WithdrawStatus.PROCESSING).update(
            tx_hash=tx.tx_hash, block_number=number
        )
    elif number is None and tx.status == PayoutTxStatus.MINED:
        PayoutTx.objects.filter(id=tx.id, status=PayoutTxStatus.MINED).update(
            status=PayoutTxStatus.BROADCAST, block_number=None, block_hash=None
        )
        WithdrawRecord.objects.filter(
            payout_link__payout_id=tx.payout_id, status=WithdrawStatus.PROCESSING, tx_hash=tx.tx_hash
        ).update(block_number=None)


def _settle_when_confirmed(
    *, payout: Payout, tx: PayoutTx, status: TxStatus, adapter: ChainAdapter, tip: int, now: datetime
) -> str:
    assert status.block_number is not None
    confirmations = tip - status.block_number + 1
    required = max(
        WithdrawRecord.objects.filter(payout_link__payout=payout).values_list("required_confirmations", flat=True)
    )
    if confirmations < required or adapter.block_hash(status.block_number) != status.block_hash:
        return "waiting"
    step("confirm.confirmed")
    outcome = _outcome(payout=payout, status=status, adapter=adapter)
    settled = _settle(
        payout_id=payout.id, tx_id=tx.id, status=status, outcome=outcome, confirmations=confirmations, now=now
    )
    if not settled:
        return "waiting"
    return "completed" if outcome == PAID else "failed"


def _outcome(*, payout: Payout, status: TxStatus, adapter: ChainAdapter) -> str:
    """Whether a mined transaction paid every withdrawal of the payout as signed."""
    if not status.success:
        return REVERTED
    contract = payout.coin.contract_address
    if coins_selectors.coin_is_native(coin=payout.coin) or not contract:
        return PAID  # a value transfer that succeeded moved the value
    key = adapter.match_key
    logged = Counter(
        (t.contract, key(t.from_address), key(t.to_address), t.amount_base_units)
        for t in status.transfers
        if t.contract is not None
    )
    for to_address, amount in PayoutWithdrawal.objects.filter(payout=payout).values_list(
        "withdraw__to_address", "amount"
    ):
        expected = (
            key(contract),
            key(payout.from_address),
            key(to_address),
            coins_selectors.amount_to_base_units(coin=payout.coin, amount=amount),
        )
        if logged[expected] < 1:
            return NOT_PAID
        logged[expected] -= 1
    return PAID


@transaction.atomic(durable=True)
def _settle(*, payout_id: int, tx_id: int, status: TxStatus, outcome: str, confirmations: int, now: datetime) -> bool:
    """Settle a payout by its mined transaction: the withdrawals completed (paid) or failed and unfrozen."""
    payout, withdrawals = payout_lock(payout_id)
    if payout.status != PayoutStatus.OPEN:
        return False
    winner = PayoutTx.objects.get(id=tx_id)
    fee = winner.fee  # BTC: known at signing; the node's receipt says it elsewhere
    if status.fee is not None:
        fee = coins_selectors.amount_from_base_units(coin=native_coin(payout.chain_id), base_units=status.fee)
    if fee is None:
        fee = winner.fee  # BTC: the node reports none; the fee was fixed when it was signed
    winner.status = PayoutTxStatus.MINED if outcome == PAID else PayoutTxStatus.FAILED
    winner.block_number, winner.block_hash, winner.fee = status.block_number, status.block_hash, fee
    winner.save(update_fields=["status", "block_number", "block_hash", "fee", "updated_at"])
    # Paid whether the transaction succeeded or reverted; the dropped siblings below paid nothing.
    records.payout_network_fee_book(tx=winner, native=native_coin(payout.chain_id), fee=fee)
    # The others of the payout can never be mined now (same nonce, or inputs spent by the winner);
    # a CPFP child is not one of them: it spends the winner's change and is followed on its own.
    PayoutTx.objects.filter(payout=payout, status__in=LIVE_TX).exclude(id=winner.id).exclude(
        kind=PayoutTxKind.CPFP_CHILD
    ).update(status=PayoutTxStatus.DROPPED, block_number=None, block_hash=None)
    payout.status = PayoutStatus.COMPLETED if outcome == PAID else PayoutStatus.FAILED
    payout.settled_at = now
    payout.save(update_fields=["status", "settled_at", "updated_at"])
    for record in withdrawals:
        if record.status != WithdrawStatus.PROCESSING:
            continue
        record.tx_hash, record.block_number, record.confirmations = winner.tx_hash, status.block_number, confirmations
        if outcome == PAID:
            _complete(record=record, now=now)
        else:
            _fail(record=record, outcome=outcome, payout=payout, now=now)
    return True


def _complete(*, record: WithdrawRecord, now: datetime) -> None:
    assets_services.balance_settle_frozen(
        user_id=record.user_id,
        coin=record.coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_SETTLE,
        biz_ref=record.withdraw_no,
        ref_tx_hash=record.tx_hash or "",
        memo=f"withdrawal {record.withdraw_no}",
    )
    records.withdrawal_fee_book(record=record)
    step("complete.settled")
    record.complete_time = now
    records.withdrawal_transition(
        record=record, auditor_id=None, action="confirm", to_status=WithdrawStatus.COMPLETED, remark=""
    )
    records.withdrawal_event(record=record, now=now)


def _fail(*, record: WithdrawRecord, outcome: str, payout: Payout, now: datetime) -> None:
    if outcome == REVERTED:
        why, kind = "reverted on chain", "WITHDRAW_FAILED"
        text = f"withdrawal {record.withdraw_no} reverted on chain; its amount is unfrozen"
    else:
        why, kind = "the token moved nothing", "WITHDRAW_TOKEN_NOT_PAID"
        text = (
            f"withdrawal {record.withdraw_no} (payout {payout.id}): its transaction succeeded but holds no Transfer of "
            f"{record.actual_amount.normalize():f} {record.coin_id} from {payout.from_address} to {record.to_address} "
            f"by token {payout.coin.contract_address}; nothing was paid and its amount is unfrozen. Check the token "
            "(paused, blacklisting, a transfer that returns false) before paying this recipient again"
        )
    assets_services.balance_unfreeze(
        user_id=record.user_id,
        coin=record.coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_UNFREEZE,
        biz_ref=record.withdraw_no,
        ref_tx_hash=record.tx_hash or "",
        memo=f"withdrawal {record.withdraw_no} {why}",
    )
    records.withdrawal_transition(
        record=record, auditor_id=None, action="fail", to_status=WithdrawStatus.FAILED, remark=why
    )
    records.withdrawal_event(record=record, now=now)
    monitoring_services.alert_raise(
        severity=Severity.WARNING if outcome == REVERTED else Severity.CRITICAL,
        kind=kind,
        subject=f"withdrawal {record.withdraw_no}",
        message=text,
        now=now,
    )


def _nonce_taken_trip(*, payout: Payout, now: datetime) -> None:
    """
    Trip the chain's circuit breakers the first time a payout's nonce is seen taken.

    Something else signed with the hot address's key (another system sharing it, or a leaked key):
    nothing more of the chain is signed until two people cleared the breaker. Only the first
    sighting trips, so that once cleared, ops can re-sign the payout (which needs the breaker
    clear) while the confirm job keeps alerting.
    """
    first = Payout.objects.filter(id=payout.id, nonce_taken_at__isnull=True).update(nonce_taken_at=now)
    if first:
        controls_breakers.breaker_trip_chain(
            chain_id=payout.chain_id,
            reason=(
                f"nonce {payout.nonce} of hot address {payout.from_address} was taken by a transaction this "
                f"system did not sign ({label(payout)})"
            ),
            source=BreakerSource.PAYOUT,
            now=now,
        )


def _nonce_taken_alert(*, payout: Payout, txs: list[PayoutTx], used: int) -> None:
    alert(
        severity=Severity.CRITICAL,
        kind="WITHDRAW_NONCE_TAKEN",
        subject=label(payout),
        text=(
            f"{label(payout)}: nonce {payout.nonce} of hot address {payout.from_address} was used by another "
            f"transaction (the address has {used} mined), and none of the {len(txs)} transaction(s) of payout "
            f"{payout.id} is in a block: "
            "it can never be mined, and the chain's circuit breakers were tripped (something else signs with this "
            "key). Check in the address's history that the transaction which took the nonce did not pay this "
            "withdrawal and who sent it; clear the breakers (four eyes), then use the admin action 'Re-sign with "
            "a new nonce' on it (permission "
            "withdrawals.resign_payout, a remark required); it re-signs only once the nonce is used at the "
            "withdrawal's confirmations depth."
        ),
    )
