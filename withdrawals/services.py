"""
Withdrawals: apply, audit (approve or reject) and settlement of internal transfers.

The seed's state machine: 1 pending review -> 2 approved | 3 rejected; 2 -> 4 processing ->
5 completed | 6 failed. Every transition locks the withdrawal row, checks its source state and
writes an audit log row and a WALLET_WITHDRAW event in the same transaction. The amount is frozen
on apply, paid out of the frozen balance on completion and unfrozen on rejection.

A withdrawal to another user's deposit address is settled in the ledger once approved, without a
fee and without touching the chain. Approved withdrawals to outside addresses are paid on chain
by withdrawals_pay and settled by withdrawals_confirm (EVM: ETH and ERC20 tokens so far; BTC and
TRON withdrawals stay approved until their payout is built).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from addresses import hd, signer
from addresses import selectors as addresses_selectors
from addresses import services as addresses_services
from addresses.validation import address_validate
from assets import events as assets_events
from assets import services as assets_services
from assets.models import BusinessType
from chains import registry as chains_registry
from chains import services as chains_services
from chains.base import ChainAdapter, ChainError, SignedTx, TxRejected
from coins import selectors as coins_selectors
from coins.models import CoinConfig, FeeType, Switch
from monitoring import services as monitoring_services
from monitoring.models import Severity
from recharges import selectors as recharges_selectors
from wallet_project.db import retry_on_deadlock
from wallet_project.errors import Conflict, WalletError
from wallet_project.ids import business_no
from wallet_project.money import exact, round_up
from withdrawals.models import WithdrawAuditLog, WithdrawRecord, WithdrawStatus

logger = logging.getLogger(__name__)

# Withdrawals that count against the daily limit: all but those whose money was released.
_COUNTED = [s for s in WithdrawStatus if s not in (WithdrawStatus.REJECTED, WithdrawStatus.FAILED)]


class WithdrawalsHeld(Conflict):
    code = "withdrawals_held"


class WithdrawalRefused(WalletError):
    code = "withdrawal_refused"


def withdrawal_apply(
    *, user_id: int, coin_id: str, to_address: str, amount: object, idempotency_key: str, now: datetime | None = None
) -> WithdrawRecord:
    """
    Apply for a withdrawal: check it, freeze the amount, and approve it at once below the audit threshold.

    Idempotent per (user, idempotency_key): the same request again returns the first withdrawal;
    another request under a used key is refused. The fee (fixed, or the coin's rate of the amount
    rounded up to its precision) is part of the amount: actual_amount = amount - fee.
    :raises NotFound, CoinDisabled, InvalidAmount, InvalidAddress, WithdrawalRefused: bad request.
    :raises InsufficientFunds: the available balance is smaller than the amount.
    :raises WithdrawalsHeld: a reorg shortfall holds the user's withdrawals.
    :raises Conflict: the idempotency key was used for another withdrawal.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 64:
        raise WalletError("An idempotency key of 1 to 64 characters is required.", field="idempotency_key")
    coin = coins_selectors.coin_get_enabled(coin_id=coin_id)
    checked = coins_selectors.amount_check(coin=coin, amount=amount)
    address = address_validate(coin.chain_id, to_address)
    moment = now or timezone.now()
    return retry_on_deadlock(
        functools.partial(_apply, user_id=user_id, coin=coin, address=address, amount=checked, key=key, now=moment)
    )


@transaction.atomic(durable=True)
def _apply(*, user_id: int, coin: CoinConfig, address: str, amount: Decimal, key: str, now: datetime) -> WithdrawRecord:
    # The balance lock first: it serialises this user's applications of this coin, so the daily
    # limit and the idempotency key are read under it.
    assets_services.balance_lock(user_id=user_id, coin=coin)
    existing = WithdrawRecord.objects.filter(user_id=user_id, idempotency_key=key).order_by("id").first()
    if existing is not None:
        return _replay(existing=existing, key=key, coin=coin, address=address, amount=amount)
    if coin.withdraw_enabled != Switch.ENABLED:
        raise WithdrawalRefused(f"Withdrawals of {coin.coin_id} are switched off.", field="coin")
    if amount < coin.min_withdraw_amount:
        raise WithdrawalRefused(f"The minimum withdrawal is {coin.min_withdraw_amount} {coin.coin_id}.", field="amount")
    if amount > coin.max_withdraw_amount:
        raise WithdrawalRefused(f"The maximum withdrawal is {coin.max_withdraw_amount} {coin.coin_id}.", field="amount")
    if recharges_selectors.withdrawals_held(user_id=user_id):
        raise WithdrawalsHeld("Withdrawals are held while a reversed deposit is settled; contact support.")
    to_user_id = _internal_recipient(user_id=user_id, chain_id=coin.chain_id, address=address)
    fee = Decimal(0) if to_user_id is not None else _fee(coin=coin, amount=amount)
    with exact():
        actual = amount - fee
    if actual <= 0:
        raise WithdrawalRefused(f"The amount does not cover the fee of {fee} {coin.coin_id}.", field="amount")
    _daily_limit_check(user_id=user_id, coin=coin, amount=amount, now=now)
    try:
        with transaction.atomic():  # a savepoint: the same key may be racing on another coin
            record = WithdrawRecord.objects.create(
                withdraw_no=business_no(prefix="W", now=now),
                user_id=user_id,
                coin=coin,
                coin_name=coin.coin_name,
                to_address=address,
                to_user_id=to_user_id,
                amount=amount,
                fee=fee,
                actual_amount=actual,
                status=WithdrawStatus.PENDING_REVIEW,
                required_confirmations=coin.required_confirmations,
                approvals_required=2 if amount > coin.withdraw_dual_audit_threshold else 1,
                idempotency_key=key,
            )
    except IntegrityError:
        existing = WithdrawRecord.objects.get(user_id=user_id, idempotency_key=key)
        return _replay(existing=existing, key=key, coin=coin, address=address, amount=amount)
    assets_services.balance_freeze(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=BusinessType.WITHDRAW_FREEZE,
        biz_ref=record.withdraw_no,
        memo=f"withdrawal {record.withdraw_no}",
    )
    _log(record=record, auditor_id=None, action="apply", to_status=WithdrawStatus.PENDING_REVIEW, remark="")
    if amount <= coin.withdraw_audit_threshold and record.approvals_required == 1:
        _approved(
            record=record,
            coin=coin,
            auditor_id=None,
            action="auto_approve",
            remark="below the audit threshold",
            now=now,
        )
    else:
        _event(record=record, now=now)
    logger.info("withdrawal %s applied: %s %s, status %s", record.withdraw_no, amount, coin.coin_id, record.status)
    return record


def withdrawal_approve(
    *, withdraw_id: int, auditor_id: int, remark: str = "", now: datetime | None = None
) -> WithdrawRecord:
    """
    Record an auditor's approval; the withdrawal is approved once enough different auditors agreed.

    One approval up to the coin's dual-audit threshold, two different auditors above it. Nobody
    approves their own withdrawal. An approved internal transfer is settled at once.
    :raises Conflict: not pending review, the auditor's own withdrawal, or approved by them already.
    """
    moment = now or timezone.now()
    return retry_on_deadlock(
        functools.partial(_approve, withdraw_id=withdraw_id, auditor_id=auditor_id, remark=remark.strip(), now=moment)
    )


@transaction.atomic(durable=True)
def _approve(*, withdraw_id: int, auditor_id: int, remark: str, now: datetime) -> WithdrawRecord:
    record = _locked(withdraw_id)
    if record.status != WithdrawStatus.PENDING_REVIEW:
        raise Conflict(f"Withdrawal {record.withdraw_no} is {record.get_status_display()}: it cannot be approved.")
    if auditor_id in (record.user_id, record.to_user_id):
        raise Conflict("Nobody approves a withdrawal that is theirs or pays them.")
    approvals = set(record.audit_logs.filter(action="approve").values_list("auditor_id", flat=True))
    if auditor_id in approvals:
        raise Conflict("You approved this withdrawal already: a second, different auditor must approve it.")
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    # What was true at apply must still be: a reorg hold or a switched-off coin stops approvals.
    if coin.withdraw_enabled != Switch.ENABLED or not coin.is_enabled:
        raise Conflict(f"Withdrawals of {coin.coin_id} are switched off: approve it once they are on again.")
    if recharges_selectors.withdrawals_held(user_id=record.user_id):
        raise WithdrawalsHeld("The applicant's withdrawals are held while a reversed deposit is settled.")
    if len(approvals) + 1 < record.approvals_required:
        _log(
            record=record,
            auditor_id=auditor_id,
            action="approve",
            to_status=WithdrawStatus.PENDING_REVIEW,
            remark=remark,
        )
        logger.info("withdrawal %s: first of two approvals", record.withdraw_no)
        return record
    _approved(record=record, coin=coin, auditor_id=auditor_id, action="approve", remark=remark, now=now)
    return record


def withdrawal_reject(*, withdraw_id: int, auditor_id: int, remark: str, now: datetime | None = None) -> WithdrawRecord:
    """
    Reject a withdrawal pending review or approved but not yet processing; unfreeze its amount.

    :raises WalletError: no remark (the user is told why).
    :raises Conflict: already on its way, settled or rejected; or the auditor's own withdrawal.
    """
    text = remark.strip()
    if not text:
        raise WalletError("A rejection needs a remark saying why.", field="remark")
    moment = now or timezone.now()
    return retry_on_deadlock(
        functools.partial(_reject, withdraw_id=withdraw_id, auditor_id=auditor_id, remark=text, now=moment)
    )


@transaction.atomic(durable=True)
def _reject(*, withdraw_id: int, auditor_id: int, remark: str, now: datetime) -> WithdrawRecord:
    record = _locked(withdraw_id)
    if record.status not in (WithdrawStatus.PENDING_REVIEW, WithdrawStatus.APPROVED):
        raise Conflict(f"Withdrawal {record.withdraw_no} is {record.get_status_display()}: it cannot be rejected.")
    if auditor_id in (record.user_id, record.to_user_id):
        raise Conflict("Nobody audits a withdrawal that is theirs or pays them.")
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    assets_services.balance_unfreeze(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_UNFREEZE,
        biz_ref=record.withdraw_no,
        memo=f"withdrawal {record.withdraw_no} rejected",
    )
    _audited(record=record, auditor_id=auditor_id, remark=remark, now=now)
    _transition(record=record, auditor_id=auditor_id, action="reject", to_status=WithdrawStatus.REJECTED, remark=remark)
    _event(record=record, now=now)
    return record


# --- steps -----------------------------------------------------------------------------------------


def _replay(*, existing: WithdrawRecord, key: str, coin: CoinConfig, address: str, amount: Decimal) -> WithdrawRecord:
    # The key column compares case-insensitively on MySQL: "ABC" finds "abc", which is another key.
    if (existing.idempotency_key, existing.coin_id, existing.to_address, existing.amount) != (
        key,
        coin.coin_id,
        address,
        amount,
    ):
        raise Conflict(
            f"Idempotency key {existing.idempotency_key!r} was used for another withdrawal.", field="idempotency_key"
        )
    return existing


def _internal_recipient(*, user_id: int, chain_id: str, address: str) -> int | None:
    """The user whose deposit address this is (an internal transfer), or None for an outside address."""
    ours = addresses_selectors.address_find(chain_id=chain_id, address=address)
    if ours is None:
        return None
    if ours.user_id is None:
        raise WithdrawalRefused("This address belongs to the exchange's own wallets.", field="to_address")
    if ours.user_id == user_id:
        raise WithdrawalRefused("This is your own deposit address.", field="to_address")
    return ours.user_id


def _fee(*, coin: CoinConfig, amount: Decimal) -> Decimal:
    if coin.withdraw_fee_type == FeeType.RATE:
        with exact():
            fee = amount * coin.withdraw_fee_rate
        # Rounded up to the coin's precision: a fee finer than the chain can carry is not a fee.
        return round_up(fee, coin.quantum)
    with exact():
        too_fine = coin.withdraw_fee % coin.quantum != 0
    if too_fine:
        raise WithdrawalRefused(
            f"The withdrawal fee of {coin.coin_id} is finer than its precision: ops must correct it.", field="coin"
        )
    return coin.withdraw_fee


def _daily_limit_check(*, user_id: int, coin: CoinConfig, amount: Decimal, now: datetime) -> None:
    zone = ZoneInfo(settings.WALLET_BUSINESS_TIME_ZONE)
    day_start = datetime.combine(now.astimezone(zone).date(), time.min, tzinfo=zone)
    used = WithdrawRecord.objects.filter(
        user_id=user_id,
        coin_id=coin.coin_id,
        status__in=_COUNTED,
        create_time__gte=day_start,
        create_time__lt=day_start + timedelta(days=1),
    ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    with exact():
        over = used + amount > coin.withdraw_daily_limit
    if over:
        raise WithdrawalRefused(
            f"The daily withdrawal limit of {coin.withdraw_daily_limit} {coin.coin_id} would be exceeded "
            f"({used} used today).",
            field="amount",
        )


def _locked(withdraw_id: int) -> WithdrawRecord:
    try:
        return WithdrawRecord.objects.select_for_update().get(id=withdraw_id)
    except WithdrawRecord.DoesNotExist:
        raise WalletError(f"No withdrawal {withdraw_id}.", code="not_found") from None


def _approved(
    *, record: WithdrawRecord, coin: CoinConfig, auditor_id: int | None, action: str, remark: str, now: datetime
) -> None:
    if auditor_id is not None:
        _audited(record=record, auditor_id=auditor_id, remark=remark, now=now)
    _transition(record=record, auditor_id=auditor_id, action=action, to_status=WithdrawStatus.APPROVED, remark=remark)
    if record.to_user_id is not None:
        _internal_settle(record=record, coin=coin, now=now)
    _event(record=record, now=now)


def _internal_settle(*, record: WithdrawRecord, coin: CoinConfig, now: datetime) -> None:
    """Pay an internal transfer in the ledger: out of the sender's frozen balance, into the recipient's."""
    assets_services.balance_settle_frozen(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_SETTLE,
        biz_ref=record.withdraw_no,
        memo=f"internal withdrawal {record.withdraw_no}",
    )
    assets_services.balance_credit(
        user_id=record.to_user_id,
        coin=coin,
        amount=record.actual_amount,
        business_type=BusinessType.INTERNAL_TRANSFER_IN,
        biz_ref=record.withdraw_no,
        memo=f"internal withdrawal {record.withdraw_no} from user {record.user_id}",
    )
    record.complete_time = now
    record.confirmations = None
    _transition(
        record=record, auditor_id=None, action="settle_internal", to_status=WithdrawStatus.COMPLETED, remark="off chain"
    )


def _audited(*, record: WithdrawRecord, auditor_id: int, remark: str, now: datetime) -> None:
    record.audit_user = get_user_model().objects.get(id=auditor_id).get_username()[:32]
    record.audit_time = now
    record.audit_remark = remark[:500] or None


def _transition(
    *, record: WithdrawRecord, auditor_id: int | None, action: str, to_status: WithdrawStatus, remark: str
) -> None:
    _log(record=record, auditor_id=auditor_id, action=action, to_status=to_status, remark=remark)
    record.status = to_status
    record.save(
        update_fields=[
            "status", "audit_user", "audit_time", "audit_remark", "confirmations", "complete_time", "update_time",
            "from_address", "nonce", "signed_tx", "tx_hash", "block_number", "broadcast_time",
        ]
    )  # fmt: skip


def _log(
    *, record: WithdrawRecord, auditor_id: int | None, action: str, to_status: WithdrawStatus, remark: str
) -> None:
    WithdrawAuditLog.objects.create(
        withdraw=record,
        auditor_id=auditor_id,
        action=action,
        from_status=record.status,
        to_status=to_status,
        remark=remark[:500],
    )


def _event(*, record: WithdrawRecord, now: datetime) -> None:
    assets_services.outbox_enqueue(
        event=assets_events.wallet_withdraw(
            withdraw_no=record.withdraw_no,
            user_id=record.user_id,
            coin_id=record.coin_id,
            amount=record.amount,
            fee=record.fee,
            actual_amount=record.actual_amount,
            to_address=record.to_address,
            internal=record.to_user_id is not None,
            tx_hash=record.tx_hash,
            status=int(record.status),
            at=now,
        )
    )


# --- on-chain payment ----------------------------------------------------------------------------

# Chains whose approved withdrawals withdrawals_pay can send; the others (BTC) wait, approved.
ONCHAIN_CHAINS = ("ETH", "TRON")
# EVM senders number their transactions: a stored one the node has not taken holds its nonce.
NONCE_CHAINS = ("ETH",)
# A node's clock may run a little ahead of the producers'; no block this much past expiry includes it.
TRON_EXPIRY_MARGIN_MS = 6_000
NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError)

# Fault injection: tests set this to a callable that raises when the named step is reached, to
# prove that a crash between signing and broadcasting pays once. Always None in a running service.
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
    record = _locked(withdraw_id)
    if record.status != WithdrawStatus.APPROVED or record.to_user_id is not None:
        return None
    _sign_transfer(record=record, adapter=adapter, gas_price=gas_price, action="sign")
    _event(record=record, now=now)
    return record


def _sign_transfer(*, record: WithdrawRecord, adapter: ChainAdapter, gas_price: int | None, action: str) -> None:
    """Pick the hot address, build, check, sign and store the transfer of a locked withdrawal (PROCESSING)."""
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    if coin.coin_id != hd.NATIVE_COIN[coin.chain_id] and not coin.contract_address:
        # A token without its contract would be paid in the chain's own coin.
        raise WithdrawalRefused(f"{coin.coin_id} has no contract address configured: ops must set it.")
    # Any enabled hot address of the pool: its recorded balance is not kept per token; what it
    # holds on chain is checked below (shortfall) before anything is signed.
    hot = addresses_services.hot_wallet_select(
        chain_id=coin.chain_id, wallet_type=settings.WITHDRAW_HOT_WALLET_TYPE, amount=Decimal(0)
    )
    amount = coins_selectors.amount_to_base_units(coin=coin, amount=record.actual_amount)
    contract = coin.contract_address or None
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
    _transition(record=record, auditor_id=None, action=action, to_status=WithdrawStatus.PROCESSING, remark=remark)


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
    native_id = hd.NATIVE_COIN[coin.chain_id]
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
    record = _locked(withdraw_id)
    if record.status != WithdrawStatus.PROCESSING or record.tx_hash != tx_hash:
        return None  # settled, or replaced by another worker meanwhile
    if not _never_included(record=record, adapter=adapter):
        return None  # undecided after all: it is followed as usual
    _sign_transfer(record=record, adapter=adapter, gas_price=None, action="resign")
    return record


@transaction.atomic(durable=True)
def _complete(*, withdraw_id: int, block_number: int, confirmations: int, now: datetime) -> None:
    record = _locked(withdraw_id)
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
    _transition(record=record, auditor_id=None, action="confirm", to_status=WithdrawStatus.COMPLETED, remark="")
    _event(record=record, now=now)


@transaction.atomic(durable=True)
def _fail(*, withdraw_id: int, block_number: int, confirmations: int, now: datetime) -> None:
    record = _locked(withdraw_id)
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
    _transition(
        record=record, auditor_id=None, action="fail", to_status=WithdrawStatus.FAILED, remark="reverted on chain"
    )
    _event(record=record, now=now)
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
