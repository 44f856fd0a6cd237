"""What every step of the payout shares: its refusals and results, the fault hook, alerts, the
checks made under a withdrawal's lock before anything is signed, and storing a signed transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db.models import QuerySet
from django.utils import timezone

from addresses import services as addresses_services
from addresses import signer
from chains.base import ChainAdapter, ChainError, SignedTx, UnsignedTx
from coins import selectors as coins_selectors
from coins.models import CoinConfig, Switch
from monitoring import services as monitoring_services
from monitoring.models import Severity
from recharges import selectors as recharges_selectors
from wallet_project.errors import WalletError
from withdrawals import risk_rules as withdrawals_risk
from withdrawals.models import (
    Payout,
    PayoutStatus,
    PayoutTx,
    PayoutTxKind,
    PayoutTxStatus,
    PayoutWithdrawal,
    WithdrawRecord,
)

logger = logging.getLogger("withdrawals.payout")

# Chains whose approved withdrawals withdrawals_pay can send (BTC from the UTXO set: payout/btc.py).
ONCHAIN_CHAINS = ("ETH", "TRON", "BTC")
# EVM senders number their transactions: a stored one the node has not taken holds its nonce.
NONCE_CHAINS = ("ETH",)
NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError)
# At signing these stop the chain's run: the node is down, or the chain has no hot address that can
# sign; the next withdrawal would fail the same way. Any other refusal concerns one withdrawal.
CHAIN_STOPS: tuple[type[Exception], ...] = (
    ChainError,
    OSError,
    addresses_services.NoHotWallet,
    signer.SignerError,
)
# Transactions of an open payout that may still be mined.
LIVE_TX = (PayoutTxStatus.SIGNED, PayoutTxStatus.BROADCAST, PayoutTxStatus.MINED)


class PayoutWaits(WalletError):
    """
    This withdrawal cannot be signed now: it stays as it is and the run goes on to the next one.

    alert_kind names the alert raised for it (one per withdrawal: alerts deduplicate by kind and
    subject), or is None where no person needs to act (a coin switched off by ops).
    """

    code = "payout_waits"

    def __init__(self, message: str, *, alert_kind: str | None) -> None:
        super().__init__(message)
        self.alert_kind = alert_kind


@dataclass(frozen=True)
class PayoutResult:
    chain_id: str
    signed: int = 0
    broadcast: int = 0
    completed: int = 0
    failed: int = 0
    waiting: int = 0
    replaced: int = 0  # stuck EVM transactions replaced by one with a higher fee
    error: str | None = None  # why the run stopped early (node down, no hot address); None if it went through
    waits: tuple[str, ...] = ()  # why each withdrawal left unsigned by withdrawals_pay waits


def step(name: str) -> None:
    """Call the tests' fault hook (withdrawals.payout.fault_hook) at a named step; no-op in service."""
    from withdrawals import payout

    if payout.fault_hook is not None:
        payout.fault_hook(name)


def alert(*, severity: Severity, kind: str, subject: str, text: str) -> None:
    logger.warning("%s %s: %s", kind, subject, text)
    monitoring_services.alert_raise_alone(severity=severity, kind=kind, subject=subject, message=text)


def waiting(*, exc: PayoutWaits, subject: str) -> None:
    if exc.alert_kind is None:
        logger.info("%s", exc.message)
    else:
        alert(severity=Severity.WARNING, kind=exc.alert_kind, subject=subject, text=exc.message)


def payable_check(*, record: WithdrawRecord) -> CoinConfig:
    """
    Refuse to sign a locked withdrawal while its coin is switched off or its user's withdrawals are
    held; return its coin as read now.

    Apply and approval checked the same, but a reorg hold or a switch may have come since.
    :raises PayoutWaits: it waits, approved (or with its old transactions) until then.
    """
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    if coin.withdraw_enabled != Switch.ENABLED or not coin.is_enabled:
        raise PayoutWaits(
            f"withdrawal {record.withdraw_no} waits unsigned: withdrawals of {coin.coin_id} are switched off",
            alert_kind=None,
        )
    if recharges_selectors.withdrawals_held(user_id=record.user_id):
        raise PayoutWaits(
            f"withdrawal {record.withdraw_no} of user {record.user_id} waits unsigned: the user's withdrawals are "
            "held (reorg hold: a credited deposit was orphaned and could not be taken back); it is paid once ops "
            "settle the shortfall and lift the hold",
            alert_kind="WITHDRAW_HELD",
        )
    if (stop := withdrawals_risk.signing_stop(record=record, coin=coin, now=timezone.now())) is not None:
        raise PayoutWaits(stop.message, alert_kind=stop.alert_kind)  # a tripped breaker, a refusing risk rule
    return coin


def payable_screen(*, records: Sequence[WithdrawRecord], coin: CoinConfig) -> set[int]:
    """
    payable_check for a group of locked withdrawals of coin (coin read under their locks): the ids
    of those it would certainly pass, by one query per check. It errs towards clearing too few:
    a withdrawal of a user with any active hold, or one a refusing risk rule might concern, is not
    cleared and goes to payable_check alone, which decides and says why.
    """
    if coin.withdraw_enabled != Switch.ENABLED or not coin.is_enabled:
        return set()
    held = recharges_selectors.users_with_holds(user_ids={r.user_id for r in records})
    clear = withdrawals_risk.signing_clear(records=[r for r in records if r.user_id not in held], coin=coin)
    return {r.id for r in records if r.id in clear}


def native_coin(chain_id: str) -> CoinConfig:
    """The chain's own coin (gas, fees), as configured (coins: is_native)."""
    return coins_selectors.chain_native_coin(chain_id=chain_id)


def payout_tx_store(
    *, payout: Payout, unsigned: UnsignedTx, signed: SignedTx, kind: PayoutTxKind, replaces: PayoutTx | None = None
) -> PayoutTx:
    """Store a signed transaction of a payout (status SIGNED) with its fee terms: before any node sees it."""
    tx = payout_tx_row(payout=payout, unsigned=unsigned, signed=signed, kind=kind, replaces=replaces)
    tx.save(force_insert=True)
    return tx


def payout_tx_row(
    *, payout: Payout, unsigned: UnsignedTx, signed: SignedTx, kind: PayoutTxKind, replaces: PayoutTx | None = None
) -> PayoutTx:
    """The row payout_tx_store stores, not saved yet (a group of payouts inserts theirs at once)."""
    terms = unsigned.terms
    fee = None
    if terms.fee is not None:
        fee = coins_selectors.amount_from_base_units(coin=native_coin(payout.chain_id), base_units=terms.fee)
    return PayoutTx(
        payout=payout,
        kind=kind,
        status=PayoutTxStatus.SIGNED,
        tx_hash=signed.tx_hash,
        raw=signed.raw,
        nonce=unsigned.nonce,
        replaces=replaces,
        gas_limit=terms.gas_limit,
        max_fee_per_gas=terms.max_fee_per_gas,
        max_priority_fee_per_gas=terms.max_priority_fee_per_gas,
        gas_price=terms.gas_price,
        fee_limit=terms.fee_limit,
        fee_rate=terms.fee_rate,
        vsize=terms.vsize,
        fee=fee,
    )


def payout_lock(payout_id: int) -> tuple[Payout, list[WithdrawRecord]]:
    """Lock a payout's withdrawals (by id, the order every payer locks them in), then the payout."""
    from withdrawals import records

    ids = list(
        PayoutWithdrawal.objects.filter(payout_id=payout_id)
        .order_by("withdraw_id")
        .values_list("withdraw_id", flat=True)
    )
    withdrawals = [records.withdrawal_lock(withdraw_id) for withdraw_id in ids]
    payout = Payout.objects.select_for_update().get(id=payout_id)
    return payout, withdrawals


def live_txs(payout: Payout) -> QuerySet[PayoutTx]:
    """The payout's transactions that may still be mined, oldest first (the last is the current one)."""
    return PayoutTx.objects.filter(payout=payout, status__in=LIVE_TX).order_by("id")


def in_a_block(txs: list[PayoutTx], adapter: ChainAdapter) -> str | None:
    """Why a payout is not lost: a text naming its transaction the node has in a block, else None."""
    for tx in txs:
        status = adapter.tx_status(tx.tx_hash)
        if status.block_number is not None:
            return (
                f"Transaction {tx.tx_hash} of this payout is in block {status.block_number}: it is not lost, "
                "the confirmation job settles it. Nothing was re-signed."
            )
    return None


def label(payout: Payout) -> str:
    """How alerts name a payout: its withdrawal, or for a batch the payout itself."""
    numbers = list(
        WithdrawRecord.objects.filter(payout_link__payout=payout).order_by("id").values_list("withdraw_no", flat=True)
    )
    return f"withdrawal {numbers[0]}" if len(numbers) == 1 else f"payout {payout.id}"


def open_payouts(*, chain_id: str) -> QuerySet[Payout]:
    return Payout.objects.filter(chain_id=chain_id, status=PayoutStatus.OPEN).select_related("coin").order_by("id")
