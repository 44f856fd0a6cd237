"""Sending a stored transaction of a payout (again): only what is stored is ever sent."""

from __future__ import annotations

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
    except NonceUsed as exc:
        logger.info("payout transaction %s not sent: %s", tx.tx_hash, exc)
        return 0
    except TxRejected as exc:
        alert(
            severity=Severity.CRITICAL,
            kind="WITHDRAW_BROADCAST_REJECTED",
            subject=label(tx.payout),
            text=f"the node refused the {tx.kind.lower()} transaction of {label(tx.payout)} (payout {tx.payout_id}) "
            f"from {tx.payout.from_address}: {str(exc)[:200]}",
        )
        return 0
    except NODE_ERRORS as exc:
        alert(
            severity=Severity.WARNING,
            kind="NODE_DOWN",
            subject=f"chain {tx.payout.chain_id}",
            text=f"broadcast of {label(tx.payout)} failed: {type(exc).__name__}",
        )
        return 0
    step("broadcast.sent")
    PayoutTx.objects.filter(id=tx.id, status=PayoutTxStatus.SIGNED).update(
        status=PayoutTxStatus.BROADCAST, broadcast_at=now
    )
    return 1
