"""
On-chain payment of approved withdrawals: sign, store, broadcast, confirm.

`withdrawals_pay` signs each approved withdrawal to an outside address in a transaction that
locks it, picks a hot address, allocates that address's nonce (EVM) and stores the signed
transaction with status PROCESSING; the broadcast comes after the commit, and every retry sends
that same stored transaction. `withdrawals_confirm` follows the PROCESSING ones to completion
(WITHDRAW_SETTLE) or failure (WITHDRAW_UNFREEZE) at the coin's confirmations on a canonical block.
Apply and audit live in services.py; the withdrawal row's shared steps in records.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from addresses import services as addresses_services
from addresses import signer
from assets import services as assets_services
from assets.models import BusinessType
from chains import registry as chains_registry
from chains import services as chains_services
from chains.base import ChainAdapter, ChainError, SignedTx, TxRejected
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from monitoring import services as monitoring_services
from monitoring.models import Severity
from wallet_project.errors import WalletError
from withdrawals import records
from withdrawals.models import WithdrawRecord, WithdrawStatus
from withdrawals.services import WithdrawalRefused

logger = logging.getLogger(__name__)


# Chains whose approved withdrawals withdrawals_pay can send; the others (BTC) wait, approved.
ONCHAIN_CHAINS = ("ETH", "TRON")
# EVM senders number their transactions: a stored one the node has not taken holds its nonce.
NONCE_CHAINS = ("ETH",)
# A node's clock may run a little ahead of the producers'; no block this much past expiry includes it.
TRON_EXPIRY_MARGIN_MS = 6_000
NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError)

# Fault injection: tests set this to a callable that raises (or waits) when the named step is
# reached: "sign.locked" inside the signing transaction with the row locked, "pay.signed" after it
# committed. It proves that a crash or a concurrent writer there pays once. Always None in a
# running service.
fault_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


@dataclass(frozen=True)
class PayoutResult:
    chain_id: str
    signed: int = 0
    broadcast: int = 0
    completed: int = 0
    failed: int = 0
    waiting: int = 0
    error: str | None = None


def withdrawals_pay(*, chain_id: str, now: datetime | None = None, adapter: ChainAdapter | None = None) -> PayoutResult:
    """
    Sign and broadcast the chain's approved withdrawals to outside addresses, oldest first.

    Each is signed in a transaction that locks it, picks a hot address of WITHDRAW_HOT_WALLET_TYPE,
    allocates that address's nonce and stores the signed transaction with status PROCESSING; the
    broadcast comes after the commit. A crash in between leaves a stored transaction that
    withdrawals_confirm broadcasts again: the same transaction, never a second payment.
    """
    moment = now or timezone.now()
    if chain_id not in ONCHAIN_CHAINS:
        return PayoutResult(chain_id=chain_id, error=f"on-chain withdrawals of {chain_id} are not built yet")
    adapter = adapter or chains_registry.adapter_for(chain_id)
    ids = list(
        WithdrawRecord.objects.filter(status=WithdrawStatus.APPROVED, to_user__isnull=True, coin__chain_id=chain_id)
        .order_by("id")
        .values_list("id", flat=True)[: settings.WITHDRAW_PAY_BATCH]
    )
    signed = broadcast = 0
    # Transactions signed but not taken by the node yet go first: they hold their address's nonce.
    for record in (
        WithdrawRecord.objects.filter(
            status=WithdrawStatus.PROCESSING, coin__chain_id=chain_id, broadcast_time__isnull=True
        )
        .select_related("coin")
        .order_by("id")
    ):
        broadcast += _broadcast(record=record, adapter=adapter, now=moment)
    for withdraw_id in ids:
        try:
            # Read before any lock is taken: a slow node then delays no auditor and no other signer.
            gas_price = adapter.fee_estimate() if chain_id in NONCE_CHAINS else None
            record = _sign(withdraw_id=withdraw_id, adapter=adapter, gas_price=gas_price, now=moment)
        except (*NODE_ERRORS, WalletError) as exc:
            # Nothing was stored: the withdrawal stays approved and is tried again next time.
            text = f"signing withdrawal {withdraw_id} failed: {type(exc).__name__}: {str(exc)[:200]}"
            _alert(severity=Severity.WARNING, kind="WITHDRAW_SIGN_FAILED", subject=f"chain {chain_id}", text=text)
            return PayoutResult(chain_id=chain_id, signed=signed, broadcast=broadcast, error=text)
        if record is None:
            continue  # taken or decided meanwhile
        signed += 1
        _step("pay.signed")
        broadcast += _broadcast(record=record, adapter=adapter, now=moment)
    return PayoutResult(chain_id=chain_id, signed=signed, broadcast=broadcast)


@transaction.atomic(durable=True)
def _sign(*, withdraw_id: int, adapter: ChainAdapter, gas_price: int | None, now: datetime) -> WithdrawRecord | None:
    record = records.withdrawal_lock(withdraw_id)
    _step("sign.locked")
    if record.status != WithdrawStatus.APPROVED or record.to_user_id is not None:
        return None
    _sign_transfer(record=record, adapter=adapter, gas_price=gas_price, action="sign")
    records.withdrawal_event(record=record, now=now)
    return record


def _sign_transfer(*, record: WithdrawRecord, adapter: ChainAdapter, gas_price: int | None, action: str) -> None:
    """Pick the hot address, build, check, sign and store the transfer of a locked withdrawal (PROCESSING)."""
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    native = coins_selectors.coin_is_native(coin=coin)
    if not native and not coin.contract_address:
        # A token without its contract would be paid in the chain's own coin.
        raise WithdrawalRefused(f"{coin.coin_id} has no contract address configured: ops must set it.")
    # Any enabled hot address of the pool: its recorded balance is not kept per token; what it
    # holds on chain is checked below (shortfall) before anything is signed.
    hot = addresses_services.hot_wallet_select(
        chain_id=coin.chain_id, wallet_type=settings.WITHDRAW_HOT_WALLET_TYPE, amount=Decimal(0)
    )
    amount = coins_selectors.amount_to_base_units(coin=coin, amount=record.actual_amount)
    contract = None if native else coin.contract_address
    nonce = None
    if coin.chain_id in NONCE_CHAINS:
        if WithdrawRecord.objects.filter(
            status=WithdrawStatus.PROCESSING, from_address=hot.address, broadcast_time__isnull=True
        ).exists():
            # A transaction of this address the node has not taken holds its nonce: later ones would
            # queue behind it unmined. It is sent again first (withdrawals_pay, withdrawals_confirm).
            raise WithdrawalRefused(f"hot address {hot.address} has a signed transaction the node has not taken yet")
        nonce = chains_services.nonce_allocate(
            chain_id=coin.chain_id, address=hot.address, node_next=adapter.next_nonce(hot.address)
        )
        chain_terms: dict[str, object] = {"nonce": nonce, "gas_price": gas_price}
    else:  # TRON: no nonce; the transaction expires instead (see withdrawals_confirm)
        chain_terms = {"expiration_ms": settings.WITHDRAW_TRON_EXPIRATION_SECONDS * 1000}
    unsigned = adapter.build_transfer(
        from_address=hot.address,
        to_address=record.to_address,
        amount_base_units=amount,
        contract=contract,
        **chain_terms,
    )
    reserved_native, reserved_token = _unmined_payouts(record=record, coin=coin, from_address=hot.address)
    short = adapter.shortfall(unsigned, reserved_native=reserved_native, reserved_token=reserved_token)
    if short is not None:
        # Rolled back with the nonce: nothing is signed that the node would refuse or that would revert.
        raise WithdrawalRefused(f"hot address cannot pay withdrawal {record.withdraw_no}: {short}")
    signed = signer.signer_for(coin.chain_id)(unsigned)
    previous = record.tx_hash
    record.from_address, record.nonce, record.signed_tx, record.tx_hash = hot.address, nonce, signed.raw, signed.tx_hash
    record.broadcast_time = None
    remark = f"from {hot.address}" + (f", nonce {nonce}" if nonce is not None else "")
    if previous:
        remark += f", replacing expired {previous}"
    records.withdrawal_transition(
        record=record, auditor_id=None, action=action, to_status=WithdrawStatus.PROCESSING, remark=remark
    )


def _broadcast(*, record: WithdrawRecord, adapter: ChainAdapter, now: datetime) -> int:
    """Send the stored transaction (again); 1 if the node has it now, 0 after alerting why not."""
    try:
        adapter.broadcast_irreversible(SignedTx(tx_hash=record.tx_hash or "", raw=record.signed_tx or ""))
    except TxRejected as exc:
        # Kept as it is: a payment the hot address cannot cover yet is sent again next time.
        _alert(
            severity=Severity.CRITICAL,
            kind="WITHDRAW_BROADCAST_REJECTED",
            subject=f"withdrawal {record.withdraw_no}",
            text=f"the node refused withdrawal {record.withdraw_no} from {record.from_address}: {str(exc)[:200]}",
        )
        return 0
    except NODE_ERRORS as exc:
        _alert(
            severity=Severity.WARNING,
            kind="NODE_DOWN",
            subject=f"chain {record.coin.chain_id}",
            text=f"broadcast of withdrawal {record.withdraw_no} failed: {type(exc).__name__}",
        )
        return 0
    WithdrawRecord.objects.filter(id=record.id, broadcast_time__isnull=True).update(broadcast_time=now)
    return 1


def withdrawals_confirm(
    *, chain_id: str, now: datetime | None = None, adapter: ChainAdapter | None = None
) -> PayoutResult:
    """
    Follow the chain's withdrawals in PROCESSING: complete the mined ones, fail the reverted ones.

    At the coin's confirmations, on a block the node still has: a success pays the frozen amount
    out (WITHDRAW_SETTLE), a revert unfreezes it (WITHDRAW_UNFREEZE; the hot address paid the
    gas). A transaction the node does not know is broadcast again, and alerted as stuck after
    WITHDRAW_STUCK_SECONDS.
    """
    moment = now or timezone.now()
    if chain_id not in ONCHAIN_CHAINS:
        return PayoutResult(chain_id=chain_id)
    adapter = adapter or chains_registry.adapter_for(chain_id)
    completed = failed = waiting = 0
    try:
        tip = adapter.tip_height()
        records = (
            WithdrawRecord.objects.filter(status=WithdrawStatus.PROCESSING, coin__chain_id=chain_id)
            .select_related("coin")
            .order_by("id")
        )
        for record in records.iterator(chunk_size=200):
            status = adapter.tx_status(record.tx_hash or "")
            if not status.found and chain_id not in NONCE_CHAINS and _never_included(record=record, adapter=adapter):
                # It can never be included now: a new transaction pays this withdrawal instead.
                try:
                    resigned = _resign(withdraw_id=record.id, tx_hash=record.tx_hash or "", adapter=adapter, now=moment)
                except WalletError as exc:  # e.g. the hot wallet cannot pay now: the next run tries again
                    _alert(
                        severity=Severity.WARNING,
                        kind="WITHDRAW_SIGN_FAILED",
                        subject=f"withdrawal {record.withdraw_no}",
                        text=f"signing withdrawal {record.withdraw_no} again failed: {str(exc)[:200]}",
                    )
                    resigned = None
                if resigned is not None:
                    _broadcast(record=resigned, adapter=adapter, now=moment)
                waiting += 1
                continue
            if not status.found or status.block_number is None:
                if not status.found:
                    _broadcast(record=record, adapter=adapter, now=moment)
                # Unmined, whether the node holds it (fee too low, queued behind a gap) or not.
                started = record.broadcast_time or record.update_time
                if (moment - started).total_seconds() > settings.WITHDRAW_STUCK_SECONDS:
                    _alert(
                        severity=Severity.CRITICAL,
                        kind="WITHDRAW_STUCK",
                        subject=f"withdrawal {record.withdraw_no}",
                        text=f"withdrawal {record.withdraw_no} is not mined after {settings.WITHDRAW_STUCK_SECONDS} s",
                    )
                waiting += 1
                continue
            confirmations = tip - status.block_number + 1
            if confirmations < record.required_confirmations or adapter.block_hash(status.block_number) != (
                status.block_hash
            ):
                waiting += 1
                continue
            settle = _complete if status.success else _fail
            settle(withdraw_id=record.id, block_number=status.block_number, confirmations=confirmations, now=moment)
            completed += bool(status.success)
            failed += not status.success
    except NODE_ERRORS as exc:
        text = f"confirming withdrawals failed: {type(exc).__name__}: {str(exc)[:200]}"
        _alert(severity=Severity.WARNING, kind="NODE_DOWN", subject=f"chain {chain_id}", text=text)
        return PayoutResult(chain_id=chain_id, completed=completed, failed=failed, waiting=waiting, error=text)
    return PayoutResult(chain_id=chain_id, completed=completed, failed=failed, waiting=waiting)


def _unmined_payouts(*, record: WithdrawRecord, coin: CoinConfig, from_address: str) -> tuple[int, int]:
    """What the address's other signed, unsettled payouts promise: (native base units, this token's)."""
    native_id = coins_selectors.chain_native_coin(chain_id=coin.chain_id).coin_id
    rows = (
        WithdrawRecord.objects.filter(status=WithdrawStatus.PROCESSING, from_address=from_address)
        .exclude(id=record.id)
        .filter(coin_id__in={native_id, coin.coin_id})
        .values_list("coin_id", "actual_amount")
    )
    coins = {c.coin_id: c for c in CoinConfig.objects.filter(coin_id__in={native_id, coin.coin_id})}
    native = token = 0
    for coin_id, amount in rows:
        units = coins_selectors.amount_to_base_units(coin=coins[coin_id], amount=amount)
        if coin_id == native_id:
            native += units
        else:
            token += units
    return native, token


def _never_included(*, record: WithdrawRecord, adapter: ChainAdapter) -> bool:
    """Whether the stored TRON transaction is in no solid block and, past its expiry, never will be."""
    signed = SignedTx(tx_hash=record.tx_hash or "", raw=record.signed_tx or "")
    try:
        return adapter.never_included(signed, margin_ms=TRON_EXPIRY_MARGIN_MS)
    except (KeyError, TypeError, ValueError):
        return False


@transaction.atomic(durable=True)
def _resign(*, withdraw_id: int, tx_hash: str, adapter: ChainAdapter, now: datetime) -> WithdrawRecord | None:
    """Replace an expired, never-mined TRON transaction of a locked withdrawal with a new one."""
    record = records.withdrawal_lock(withdraw_id)
    if record.status != WithdrawStatus.PROCESSING or record.tx_hash != tx_hash:
        return None  # settled, or replaced by another worker meanwhile
    if not _never_included(record=record, adapter=adapter):
        return None  # undecided after all: it is followed as usual
    _sign_transfer(record=record, adapter=adapter, gas_price=None, action="resign")
    return record


@transaction.atomic(durable=True)
def _complete(*, withdraw_id: int, block_number: int, confirmations: int, now: datetime) -> None:
    record = records.withdrawal_lock(withdraw_id)
    if record.status != WithdrawStatus.PROCESSING:
        return
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    assets_services.balance_settle_frozen(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_SETTLE,
        biz_ref=record.withdraw_no,
        ref_tx_hash=record.tx_hash or "",
        memo=f"withdrawal {record.withdraw_no}",
    )
    record.block_number, record.confirmations, record.complete_time = block_number, confirmations, now
    records.withdrawal_transition(
        record=record, auditor_id=None, action="confirm", to_status=WithdrawStatus.COMPLETED, remark=""
    )
    records.withdrawal_event(record=record, now=now)


@transaction.atomic(durable=True)
def _fail(*, withdraw_id: int, block_number: int, confirmations: int, now: datetime) -> None:
    record = records.withdrawal_lock(withdraw_id)
    if record.status != WithdrawStatus.PROCESSING:
        return
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    assets_services.balance_unfreeze(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_UNFREEZE,
        biz_ref=record.withdraw_no,
        ref_tx_hash=record.tx_hash or "",
        memo=f"withdrawal {record.withdraw_no} reverted on chain",
    )
    record.block_number, record.confirmations = block_number, confirmations
    records.withdrawal_transition(
        record=record, auditor_id=None, action="fail", to_status=WithdrawStatus.FAILED, remark="reverted on chain"
    )
    records.withdrawal_event(record=record, now=now)
    monitoring_services.alert_raise(
        severity=Severity.WARNING,
        kind="WITHDRAW_FAILED",
        subject=f"withdrawal {record.withdraw_no}",
        message=f"withdrawal {record.withdraw_no} reverted on chain; its amount is unfrozen",
        now=now,
    )


def _alert(*, severity: Severity, kind: str, subject: str, text: str) -> None:
    logger.warning("%s %s: %s", kind, subject, text)
    monitoring_services.alert_raise_alone(severity=severity, kind=kind, subject=subject, message=text)
