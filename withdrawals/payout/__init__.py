"""
On-chain payment of approved withdrawals: sign, store, broadcast, confirm, replace.

The data model. A `payout` is one on-chain payment intention: a hot address (`from_address`) of one
chain pays one coin to the withdrawals linked to it in `payout_withdrawal` (one for EVM and TRON;
several for a BTC batch, each with its `output_index`, `amount` and `fee_share`). A withdrawal has
at most one payout, ever. Each signed transaction of a payout is a `payout_tx`: `kind` original,
replacement (EVM: same nonce, higher fee), resign (a new transaction once the old ones provably can
never be mined: an expired TRON one, an EVM nonce taken by another transaction, BTC inputs spent by
another transaction) or cpfp_child (BTC: a child paying for its parent); its fee terms (gas limit,
max fee and priority fee or gas price; TRON fee limit; BTC fee rate, vsize and fee), `status`
signed → broadcast → mined, or dropped / failed, its block once mined and when a node first took
it. A payout is open until one of its transactions is mined at the coin's confirmations: then it is
completed (or failed), that transaction stays mined and the others are recorded as dropped.
`withdraw_record.tx_hash` shows the user the newest transaction, then the mined one.

The rules. A transaction is stored before any node sees it, in the transaction that locks its
withdrawal (and allocates its EVM nonce); every retry sends the stored ones, and nothing is ever
sent that is not stored. Replacements and re-signs are new rows of the same payout, never a second
payout; whichever transaction is mined settles it once.

The modules: `signing` (approved → payout + first transaction), `broadcast`, `confirmation`
(mined → completed or failed; the unmined followed), `replacement` (stuck EVM transactions
replaced, the ops re-sign of a taken nonce, expired TRON ones re-signed), `fees` (the fee policy
and its ceilings), `btc` (BTC: batches paid from the withdraw pool's UTXOs, locked in the
transaction that stores the signed one; a stuck payout bumped by a CPFP child), `btc_resign` (the
ops re-sign of a BTC payout whose inputs were spent elsewhere); chain-specific
building lives in the chains adapters. Apply and audit live in
withdrawals/services.py, the withdrawal row's shared steps in withdrawals/records.py.

A withdrawal that cannot be signed now (its user held by a reorg, its coin switched off, the hot
address short of it, the fee above its ceiling) waits approved, with one alert where a person
must act, and the run goes on to the next one; a node that is down, or a chain without a usable
hot address, stops the run.
"""

from __future__ import annotations

from collections.abc import Callable

from withdrawals.payout.btc_resign import InputsNotProven
from withdrawals.payout.common import (
    NODE_ERRORS,
    NONCE_CHAINS,
    ONCHAIN_CHAINS,
    PayoutResult,
    PayoutWaits,
)
from withdrawals.payout.confirmation import withdrawals_confirm
from withdrawals.payout.fees import FeeCeiling
from withdrawals.payout.replacement import NonceNotProven, payout_resign, payout_resign_broadcast, payout_resign_nonce
from withdrawals.payout.signing import payout_nonces_forget, withdrawals_pay

# Fault injection: tests set this to a callable that raises, waits or kills the process when the
# named step is reached: "sign.locked" inside the signing transaction with the withdrawal's row
# locked (BTC: and the payout's UTXOs), "pay.signed" after it committed, "cpfp.signed" once a BTC
# child is stored, "broadcast.sent" once a node took a transaction (before
# that is recorded), "confirm.confirmed" before settling, "complete.settled" inside the settlement
# after the ledger moved. It proves that a crash or a concurrent writer there pays once. Always
# None in a running service.
fault_hook: Callable[[str], None] | None = None
# A node's clock may run a little ahead of the producers'; no block this much past expiry includes it.
TRON_EXPIRY_MARGIN_MS = 6_000

__all__ = [
    "NODE_ERRORS",
    "NONCE_CHAINS",
    "ONCHAIN_CHAINS",
    "FeeCeiling",
    "InputsNotProven",
    "NonceNotProven",
    "PayoutResult",
    "PayoutWaits",
    "fault_hook",
    "payout_nonces_forget",
    "payout_resign",
    "payout_resign_broadcast",
    "payout_resign_nonce",
    "withdrawals_confirm",
    "withdrawals_pay",
]
