"""
Every kind of alert the service raises: its default severity, how it ends, and what to do.

The "what to do" text travels with every delivery (webhook, email) and shows in the admin, so the
person woken at night knows the first steps without reading code. A test checks that every kind
raised anywhere in the code is registered here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from monitoring.models import Severity

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertKind:
    code: str
    severity: Severity
    what_to_do: str
    # True: a monitoring check resolves it when its condition clears; until then an acknowledged
    # alert keeps absorbing repeats (no new alert, no new message). False: a person closes it.
    resolves_itself: bool = False
    # Resolved after this many seconds without a new occurrence (events with no state to poll).
    quiet_resolve_seconds: int | None = None


_KINDS = (
    # --- chains and the deposit scanner ------------------------------------------------------
    AlertKind(
        "NODE_DOWN",
        Severity.WARNING,
        "The chain's node did not answer, or answered garbage: deposits of this chain are not scanned "
        "and its payouts are not sent. Check the node process, its URL in ETH_RPC_URL / BTC_RPC_URL / "
        "TRON_API_URL, its sync state and disk. The scanner retries every tick; this alert resolves "
        "itself once the node answers again.",
        resolves_itself=True,
    ),
    AlertKind(
        "NODE_STALE",
        Severity.WARNING,
        "The chain's tip has not moved for longer than NODE_STALE_SECONDS: the node is stuck or has no "
        "peers, or the scanner (Celery worker and beat) is not running. Compare the node's height with "
        "a public explorer, check its peers, and check the worker and beat logs. Resolves itself when "
        "the tip moves.",
        resolves_itself=True,
    ),
    AlertKind(
        "SCANNER_LAG",
        Severity.WARNING,
        "The deposit scanner is more than SCANNER_LAG_ALERT_BLOCKS behind the node's tip: deposits are "
        "credited late. Check that a worker consumes the 'scanner' queue, and look for NODE_DOWN or "
        "DEPOSIT_NOT_STORED alerts of the same chain. Resolves itself when the scanner catches up.",
        resolves_itself=True,
    ),
    AlertKind(
        "DEEP_REORG",
        Severity.CRITICAL,
        "A reorg orphaned deposits that were already credited; they were reversed with compensating "
        "debits, and what the balance could not cover is booked as the user's debt, which holds their "
        "withdrawals until a later deposit repays it. Review the account holds in the admin, contact the "
        "users concerned; settle a debt the user paid back off-system, or write it off, then acknowledge.",
    ),
    AlertKind(
        "REORG_DEBT_WRITTEN_OFF",
        Severity.WARNING,
        "An operator wrote off a user's reorg debt: the exchange took the loss named in the message. "
        "Check the remark on the account hold and that a second person knows, then acknowledge.",
    ),
    AlertKind(
        "UTXO_SPENT_ELSEWHERE",
        Severity.CRITICAL,
        "An output a BTC payout had locked was spent by a transaction the payout did not sign: something "
        "else signs with the hot wallet's keys. The chain's circuit breakers are tripped. Find the spending "
        "transaction (message) and who sent it before clearing the breakers; the payout's withdrawals wait. "
        "Then, once that spend is the coin's confirmations deep, re-sign the payout from other outputs: "
        "select one of its withdrawals, action 'Re-sign a payout that can never be mined' "
        "(permission withdrawals.resign_payout) with a remark.",
    ),
    AlertKind(
        "REORG_TOO_DEEP",
        Severity.CRITICAL,
        "A reorg is deeper than the block hashes kept (SCAN_RECENT_BLOCKS): the chain's scanner stopped "
        "rather than guess. Check the node is on the right network and chain; then rescan the affected "
        "range with deposits_rescan and acknowledge.",
    ),
    AlertKind(
        "DEPOSIT_NOT_STORED",
        Severity.CRITICAL,
        "The database refused a deposit row: the chain's scanner stays before that block so nothing is "
        "skipped. Read the message for the database error, fix the cause (schema, column size), and "
        "the next tick stores it; then acknowledge.",
    ),
    AlertKind(
        "COIN_MISCONFIGURED",
        Severity.CRITICAL,
        "A coin's contract address is not valid for its chain: its deposits are not recognised. Fix "
        "contract_address in the coin configuration, rescan the blocks since the change, acknowledge.",
    ),
    AlertKind(
        "RECHARGE_SETTLE_FAILED",
        Severity.CRITICAL,
        "The ledger refused to credit a confirmed deposit; it stays pending and is retried. Read the "
        "message, fix the cause (a conflicting flow reference, the coin's precision), acknowledge.",
    ),
    AlertKind(
        "RECHARGE_DISABLED",
        Severity.WARNING,
        "A deposit arrived for a coin whose recharge is switched off: it was recorded, not credited. "
        "Review it in the admin and credit it with the release action if it is genuine.",
    ),
    AlertKind(
        "RECHARGE_ABOVE_MAXIMUM",
        Severity.WARNING,
        "A deposit above the coin's maximum was recorded, not credited. Check its origin (compliance), "
        "then credit it with the release action in the admin or return it.",
    ),
    # --- hot wallets -----------------------------------------------------------------------------
    AlertKind(
        "HOT_BALANCE_LOW",
        Severity.WARNING,
        "A hot wallet holds less than its minimum: withdrawals will soon fail to sign for lack of funds "
        "or gas. Top it up from cold storage. Resolves itself when the balance read from the chain is "
        "back at or above the minimum.",
        resolves_itself=True,
    ),
    AlertKind(
        "HOT_BALANCE_HIGH",
        Severity.WARNING,
        "A hot wallet holds more than its maximum: more money than planned is exposed to a key kept "
        "online. Move the surplus to cold storage. Resolves itself when the balance is back at or "
        "below the maximum.",
        resolves_itself=True,
    ),
    # --- treasury (hot surplus to cold) ---------------------------------------------------------
    AlertKind(
        "TREASURY_TRANSFER_PROPOSED",
        Severity.WARNING,
        "A hot address holds more than its maximum and a treasury transfer of the surplus to a cold "
        "address waits for an operator. Check the amount and the cold address, then approve or reject it "
        "in the admin (Treasury transfers) with a remark. Resolves itself when the transfer is decided.",
        resolves_itself=True,
    ),
    AlertKind(
        "TREASURY_TRANSFER_WAITS",
        Severity.WARNING,
        "An approved treasury transfer cannot be signed or sent now (the message says why: the hot "
        "address is short of gas, the fee is above its ceiling, the node refused it). It is tried again "
        "on every run; fix the cause or reject it. Resolves itself when it is signed and sent.",
        resolves_itself=True,
    ),
    AlertKind(
        "TREASURY_TRANSFER_FAILED",
        Severity.CRITICAL,
        "A treasury transfer to cold failed (reverted on chain, expired unmined, or its surplus was gone "
        "at signing). Nothing was moved except, for a reverted one, the network fee. Check the message; "
        "the next planning run proposes a new transfer if the surplus is still there. Close it by hand.",
    ),
    AlertKind(
        "TREASURY_NO_COLD_ADDRESS",
        Severity.WARNING,
        "A hot address holds more than its maximum but its chain has no enabled cold address to move the "
        "surplus to. Register one (watch-only): `manage.py add_cold_address` or the admin's *Register a "
        "cold address*. Resolves itself when one exists.",
        resolves_itself=True,
    ),
    # --- withdrawals -----------------------------------------------------------------------------
    AlertKind(
        "WITHDRAW_REVIEW_OVERDUE",
        Severity.WARNING,
        "Withdrawals have waited for an auditor longer than WITHDRAW_REVIEW_ALERT_SECONDS. Auditors: "
        "approve or reject them in the admin (Withdrawals, status pending review). Resolves itself when "
        "none waits that long.",
        resolves_itself=True,
    ),
    AlertKind(
        "WITHDRAW_STUCK",
        Severity.CRITICAL,
        "A withdrawal's transaction is not mined after WITHDRAW_STUCK_SECONDS. On EVM it is replaced "
        "(same nonce, higher fee) unless the message says it cannot be (the fee ceiling: wait for fees to "
        "fall or raise ETH_MAX_FEE_PER_GAS_CEILING_WEI). Look the hash up on an explorer and in the node's "
        "mempool (fee too low, a nonce gap before it). It is broadcast again every run: never pay it a "
        "second time by hand. Resolves itself when the withdrawal completes or fails.",
        resolves_itself=True,
    ),
    AlertKind(
        "WITHDRAW_SIGN_FAILED",
        Severity.WARNING,
        "A withdrawal could not be signed (the hot wallet cannot cover it, or the signer refused); it "
        "stays approved and is retried every run. Top up the hot wallet or fix the cause named in the "
        "message, then acknowledge.",
    ),
    AlertKind(
        "WITHDRAW_BROADCAST_REJECTED",
        Severity.CRITICAL,
        "The node refused a signed withdrawal (funds, nonce, fee). It is kept and sent again; the "
        "message says why. Fix the cause (top up, check the nonce), never sign a second payment by "
        "hand, then acknowledge.",
    ),
    AlertKind(
        "WITHDRAW_HELD",
        Severity.WARNING,
        "An approved withdrawal waits unsigned because its owner's withdrawals are held (an open reorg "
        "debt, see the account holds). It is paid by the next payout run once the hold is lifted.",
    ),
    AlertKind(
        "WITHDRAW_HOT_WALLET_SHORT",
        Severity.WARNING,
        "An approved withdrawal waits because no hot address holds enough of the coin (or of the "
        "chain's coin for its fee); the message names the address and what is missing. Top the hot "
        "wallet up from cold; later withdrawals of the chain are paid meanwhile.",
    ),
    AlertKind(
        "WITHDRAW_FAILED",
        Severity.WARNING,
        "A withdrawal reverted on chain; its amount was unfrozen for the user. Its simulation passed at "
        "signing, so something changed before it was mined (token paused, recipient blacklisted). Check "
        "why before the user tries again, then acknowledge.",
    ),
    AlertKind(
        "WITHDRAW_WOULD_REVERT",
        Severity.WARNING,
        "The node's simulation of an approved withdrawal's transfer fails (a recipient contract that "
        "refuses ether, a token that reverts for this recipient): it is not signed, so no gas is burnt, "
        "and it is simulated again every run. An auditor rejects it in the admin (its amount is "
        "unfrozen; say why in the remark) unless the message is a node error rather than a revert, in "
        "which case it is paid once the node runs the call. Then acknowledge.",
    ),
    AlertKind(
        "WITHDRAW_TOKEN_NOT_PAID",
        Severity.CRITICAL,
        "A token withdrawal's transaction succeeded but its receipt holds no Transfer of the amount to "
        "the recipient (a token whose transfer returns false, a paused or blacklisting token): nothing "
        "was paid and the amount was unfrozen. Check the token before paying this recipient again, "
        "then acknowledge.",
    ),
    # --- sweeps ----------------------------------------------------------------------------------
    AlertKind(
        "SWEEP_GAS_STATION_SHORT",
        Severity.WARNING,
        "The gas-station hot address (pool GAS_STATION_WALLET_TYPE) cannot pay the gas or energy top-up "
        "of token sweeps: tokens wait on their deposit addresses (nothing is lost, withdrawals may run "
        "short of hot funds). Fund the gas station with the chain's own coin from cold; the next run tops "
        "up. Acknowledge once funded.",
    ),
    AlertKind(
        "SWEEP_FAILED",
        Severity.WARNING,
        "A sweep failed (its reason is in the sweep's row in the admin): mined but reverted, or its nonce "
        "taken by another transaction. Its fees are booked; the address is planned again on the next run. "
        "Look for a pattern (a token that refuses transfers, a key used outside this service).",
    ),
    AlertKind(
        "SWEEP_BROADCAST_REJECTED",
        Severity.WARNING,
        "The node refused a stored sweep or top-up transaction; it is sent again on every run. Read the "
        "node's reason in the alert: a fee too low for the node, an address without funds for gas.",
    ),
    AlertKind(
        "SWEEP_WAITS",
        Severity.WARNING,
        "A chain's sweeps could not be planned this run (fees above ETH_MAX_FEE_PER_GAS_CEILING_WEI, no hot "
        "address of SWEEP_HOT_WALLET_TYPE, no gas station). Deposits stay on their addresses meanwhile.",
        quiet_resolve_seconds=3600,
    ),
    AlertKind(
        "WITHDRAW_FEE_CEILING",
        Severity.WARNING,
        "Paying now needs a fee above its ceiling (ETH_MAX_FEE_PER_GAS_CEILING_WEI for EVM, "
        "TRON_FEE_LIMIT_SUN for a TRC20 transfer): nothing is signed, the withdrawals wait approved and "
        "are paid once fees fall. Raise the ceiling only if the payouts cannot wait; then acknowledge.",
    ),
    AlertKind(
        "WITHDRAW_REPLACED",
        Severity.WARNING,
        "A stuck EVM payout was replaced by a transaction with the same nonce and a higher fee; "
        "whichever is mined completes the withdrawal once. Nothing to do unless it keeps happening "
        "(raise the priority fee floor); acknowledge.",
    ),
    AlertKind(
        "WITHDRAW_NONCE_TAKEN",
        Severity.CRITICAL,
        "Another transaction used an EVM payout's nonce and none of its own transactions is mined: it can "
        "never be mined. Check in the hot address's history that the transaction which took the nonce "
        "did not pay this withdrawal, then run the admin action 'Re-sign the payout with a new nonce' "
        "(permission withdrawals.resign_payout) with a remark; then acknowledge.",
    ),
    AlertKind(
        "ABNORMAL_TRANSACTION",
        Severity.CRITICAL,
        "A risk rule flagged a transaction as abnormal. Review the user and the transaction in the "
        "admin; hold the account if in doubt, then acknowledge with what you decided.",
    ),
    # --- ledger, events, security ----------------------------------------------------------------
    AlertKind(
        "RECONCILIATION_MISMATCH",
        Severity.CRITICAL,
        "Reconciliation found a coin's ledger out of line (a balance row that is not the sum of its flows) "
        "or the ledger and the chain apart beyond the coin's tolerance; the coin's circuit breaker is tripped "
        "and its withdrawals are not signed. Open the run in the admin (Reconciliation runs): a ledger "
        "mismatch names the balance rows; a positive difference is a shortfall on chain (money left an "
        "exchange address without the ledger knowing: a key used outside this system, a payout or fee not "
        "booked), a negative one a surplus (a transfer in that nothing booked). Find the cause before "
        "clearing the breaker (four eyes); resolves itself when a later run balances.",
        resolves_itself=True,
    ),
    AlertKind(
        "BREAKER_TRIPPED",
        Severity.CRITICAL,
        "A coin's circuit breaker was tripped (the message says by what: reconciliation, the payout on an "
        "impossible state, or a person, and why). No withdrawal of that coin is signed; applications are "
        "still accepted and wait approved, and users see that payouts are paused. Find and fix the cause "
        "first (a ledger or chain difference, an output or nonce spent by a transaction we did not sign: "
        "treat it as a possible key compromise until proven otherwise). Then propose clearing it in the admin "
        "(Coins, action 'Propose to clear the circuit breaker', with a remark); it clears when a second "
        "person approves the proposal (Proposed changes), and this alert resolves then.",
    ),
    AlertKind(
        "EVENT_RELAY_LAG",
        Severity.WARNING,
        "Asset-change events wait longer than RELAY_LAG_ALERT_SECONDS to reach the broker: the "
        "exchange's other services see balances late. Check the relay processes (relay_events) and the "
        "broker. Resolves itself when the oldest pending event is recent again.",
        resolves_itself=True,
    ),
    AlertKind(
        "LOGIN_THROTTLED",
        Severity.WARNING,
        "Repeated failed logins or an over-eager client were throttled: password guessing or a broken "
        "integration. Check the source addresses and accounts in the message; block or contact them. "
        "Resolves itself after 15 minutes without a new occurrence.",
        quiet_resolve_seconds=900,
    ),
    # --- operations ------------------------------------------------------------------------------
    AlertKind(
        "BACKUP_FAILED",
        Severity.CRITICAL,
        "The database backup or the key vault export failed: read the message (dump tool, disk, backup "
        "key) and run backup_create again. Resolves itself when a backup of that kind succeeds.",
        resolves_itself=True,
    ),
    AlertKind(
        "BACKUP_OVERDUE",
        Severity.WARNING,
        "No database backup finished within BACKUP_MAX_AGE_HOURS: check the backup schedule (cron or "
        "CronJob) and its logs. Resolves itself when a backup finishes.",
        resolves_itself=True,
    ),
    AlertKind(
        "ALERT_DELIVERY_FAILED",
        Severity.CRITICAL,
        "Alerts could not be delivered on a channel after every retry: people may be missing alerts. "
        "Check the webhook receiver (URL, secret, TLS) or the mail server, and read the open alerts in "
        "the admin. Resolves itself when a delivery on that channel succeeds.",
        resolves_itself=True,
    ),
)

KINDS: dict[str, AlertKind] = {kind.code: kind for kind in _KINDS}

UNKNOWN_WHAT_TO_DO = "No instructions are registered for this kind of alert: read the message and the service's logs."


def kind_get(code: str) -> AlertKind:
    """Return the registered kind, or a stand-in that a person closes (an alert is never refused)."""
    kind = KINDS.get(code)
    if kind is None:
        logger.warning("alert kind %s is not registered in monitoring.kinds", code)
        return AlertKind(code, Severity.WARNING, UNKNOWN_WHAT_TO_DO)
    return kind


def what_to_do(code: str) -> str:
    kind = KINDS.get(code)
    return kind.what_to_do if kind is not None else UNKNOWN_WHAT_TO_DO


def kinds_resolving_themselves() -> list[str]:
    return sorted(code for code, kind in KINDS.items() if kind.resolves_itself or kind.quiet_resolve_seconds)
