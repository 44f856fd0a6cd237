"""Sending stored transactions of payouts (again): only what is stored is ever sent."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from chains.base import ChainAdapter, NonceUsed, SignedTx, TxRejected
from monitoring.models import Severity
from withdrawals.models import PayoutTx, PayoutTxStatus
from withdrawals.payout.common import NODE_ERRORS, alert, label, logger, step


def broadcast(*, tx: PayoutTx, adapter: ChainAdapter, now: datetime) -> int:
    """
    Send a stored transaction (again); 1 if the node has it now, 0 after saying why not.

    A refusal is alerted and the transaction kept: a payment the hot address cannot cover yet is
    sent again next time. A transaction whose nonce a mined one used is not sent at all (NonceUsed):
    withdrawals_confirm finds out which transaction took it.
    """
    try:
        adapter.broadcast_irreversible(SignedTx(tx_hash=tx.tx_hash, raw=tx.raw))
    except NODE_ERRORS as exc:
        _not_sent(tx=tx, exc=exc)
        return 0
    step("broadcast.sent")
    PayoutTx.objects.filter(id=tx.id, status=PayoutTxStatus.SIGNED).update(
        status=PayoutTxStatus.BROADCAST, broadcast_at=now
    )
    return 1


def broadcast_batch(*, txs: Sequence[PayoutTx], adapter: ChainAdapter, now: datetime) -> int:
    """
    Send stored EVM transactions in batched requests (adapter.broadcast_batch); how many the node
    has now. Each entry's answer is handled as broadcast() handles a single one: a refused entry is
    alerted and kept SIGNED (sent again by the next run or withdrawals_confirm) while the others go
    on; a node that fails the whole request is alerted once and every entry stays SIGNED.
    """
    if not txs:
        return 0
    try:
        outcomes = adapter.broadcast_batch(  # type: ignore[attr-defined]
            [SignedTx(tx_hash=tx.tx_hash, raw=tx.raw) for tx in txs]
        )
    except NODE_ERRORS as exc:
        alert(
            severity=Severity.WARNING,
            kind="NODE_DOWN",
            subject=f"chain {txs[0].payout.chain_id}",
            text=f"broadcast of {len(txs)} payout transactions failed: {type(exc).__name__}",
        )
        return 0
    taken = []
    for tx, outcome in zip(txs, outcomes, strict=True):
        if isinstance(outcome, Exception):
            _not_sent(tx=tx, exc=outcome)
        else:
            taken.append(tx.id)
    if taken:
        step("broadcast.sent")
        PayoutTx.objects.filter(id__in=taken, status=PayoutTxStatus.SIGNED).update(
            status=PayoutTxStatus.BROADCAST, broadcast_at=now
        )
    return len(taken)


def _not_sent(*, tx: PayoutTx, exc: Exception) -> None:
    """Why a stored transaction is not at the node: logged (its nonce is used) or alerted."""
    if isinstance(exc, NonceUsed):
        logger.info("payout transaction %s not sent: %s", tx.tx_hash, exc)
    elif isinstance(exc, TxRejected):
        alert(
            severity=Severity.CRITICAL,
            kind="WITHDRAW_BROADCAST_REJECTED",
            subject=label(tx.payout),
            text=f"the node refused the {tx.kind.lower()} transaction of {label(tx.payout)} (payout {tx.payout_id}) "
            f"from {tx.payout.from_address}: {str(exc)[:200]}",
        )
    else:
        alert(
            severity=Severity.WARNING,
            kind="NODE_DOWN",
            subject=f"chain {tx.payout.chain_id}",
            text=f"broadcast of {label(tx.payout)} failed: {type(exc).__name__}",
        )
