"""
Withdrawals: apply, audit (approve or reject), cancel by the owner, and settlement of internal transfers.

The seed's state machine: 1 pending review -> 2 approved | 3 rejected | 7 cancelled (by its
owner); 2 -> 4 processing -> 5 completed | 6 failed. Every transition locks the withdrawal row,
checks its source state and writes an audit log row and a WALLET_WITHDRAW event in the same
transaction. The amount is frozen on apply, paid out of the frozen balance on completion and
unfrozen on rejection or cancellation.

A withdrawal to another user's deposit address is settled in the ledger once approved, without a
fee and without touching the chain. Approved withdrawals to outside addresses are paid on chain
by payout.py.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from addresses import selectors as addresses_selectors
from addresses.validation import address_validate
from assets import services as assets_services
from assets.models import BusinessType
from coins import selectors as coins_selectors
from coins.models import CoinConfig, FeeType, Switch
from recharges import selectors as recharges_selectors
from wallet_project.db import retry_on_deadlock
from wallet_project.errors import Conflict, WalletError
from wallet_project.ids import business_no
from wallet_project.money import exact, round_up
from withdrawals import records, risk_rules
from withdrawals import selectors as withdrawals_selectors
from withdrawals.models import PayoutWithdrawal, RiskStage, WithdrawRecord, WithdrawStatus

logger = logging.getLogger(__name__)

# Withdrawals that count against the daily limit: all but those whose money was released.
_RELEASED = (WithdrawStatus.REJECTED, WithdrawStatus.FAILED, WithdrawStatus.CANCELLED)
_COUNTED = [s for s in WithdrawStatus if s not in _RELEASED]


class WithdrawalsHeld(Conflict):
    code = "withdrawals_held"


class WithdrawalRefused(WalletError):
    """A withdrawal the coin's rules forbid; each rule raises it with a code of its own."""

    code = "withdrawal_refused"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class WithdrawalNotCancellable(Conflict):
    code = "withdrawal_not_cancellable"


def _text(coin: CoinConfig, amount: Decimal) -> str:
    return coins_selectors.amount_format(coin=coin, amount=amount)


def withdrawal_apply(
    *, user_id: int, coin_id: str, to_address: str, amount: object, idempotency_key: str, now: datetime | None = None
) -> WithdrawRecord:
    """
    Apply for a withdrawal: check it, freeze the amount, and approve it at once below the audit threshold.

    Idempotent per (user, idempotency_key): the same request again returns the first withdrawal;
    another request under a used key is refused. The fee (fixed, or the coin's rate of the amount
    rounded up to its precision) is part of the amount: actual_amount = amount - fee.
    :raises UnknownCoin, CoinDisabled, InvalidAmount, InvalidAddress, WithdrawalRefused: bad request
        (a risk rule's refusal included: address_blacklisted, address_not_in_book, address_book_cooling).
    :raises InsufficientFunds: the available balance is smaller than the amount.
    :raises WithdrawalsHeld: a reorg shortfall holds the user's withdrawals.
    :raises IdempotencyKeyReused: the idempotency key was used for another withdrawal.
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 64:
        raise WalletError(
            "An idempotency key of 1 to 64 characters is required.",
            field="idempotency_key",
            code="invalid_idempotency_key",
        )
    coin = coins_selectors.coin_get_enabled(coin_id=coin_id)
    checked = coins_selectors.amount_check(coin=coin, amount=amount)
    address = address_validate(coin.chain_id, to_address)
    moment = now or timezone.now()
    try:
        return retry_on_deadlock(
            functools.partial(_apply, user_id=user_id, coin=coin, address=address, amount=checked, key=key, now=moment)
        )
    except WithdrawalRefused as refused:
        if refused.code == risk_rules.BLACKLISTED:  # raised here: the apply's own transaction rolled back
            risk_rules.blacklist_attempt_alert(user_id=user_id, coin_id=coin.coin_id, address=address)
        raise


@transaction.atomic(durable=True)
def _apply(*, user_id: int, coin: CoinConfig, address: str, amount: Decimal, key: str, now: datetime) -> WithdrawRecord:
    # The balance lock first: it serialises this user's applications of this coin, so the daily
    # limit and the idempotency key are read under it.
    assets_services.balance_lock(user_id=user_id, coin=coin)
    existing = WithdrawRecord.objects.filter(user_id=user_id, idempotency_key=key).order_by("id").first()
    if existing is not None:
        return _replay(existing=existing, coin=coin, address=address, amount=amount)
    # The coin's switches and limits as they are now, not as read before the transaction began: an
    # internal transfer settles in this very transaction, with no signing step to re-check them.
    coin = CoinConfig.objects.get(coin_id=coin.coin_id)
    if not coin.is_enabled or coin.withdraw_enabled != Switch.ENABLED:
        raise WithdrawalRefused(
            f"Withdrawals of {coin.coin_id} are switched off.", field="coin", code="withdraw_disabled"
        )
    if amount < coin.min_withdraw_amount:
        raise WithdrawalRefused(
            f"The minimum withdrawal is {_text(coin, coin.min_withdraw_amount)}.",
            field="amount",
            code="amount_below_minimum",
        )
    if amount > coin.max_withdraw_amount:
        raise WithdrawalRefused(
            f"The maximum withdrawal is {_text(coin, coin.max_withdraw_amount)}.",
            field="amount",
            code="amount_above_maximum",
        )
    if recharges_selectors.withdrawals_held(user_id=user_id):
        raise WithdrawalsHeld("Withdrawals are held while a reversed deposit is settled; contact support.")
    to_user_id = _internal_recipient(user_id=user_id, chain_id=coin.chain_id, address=address)
    fee = Decimal(0) if to_user_id is not None else _fee(coin=coin, amount=amount)
    with exact():
        actual = amount - fee
    if actual <= 0:
        raise WithdrawalRefused(
            f"The amount does not cover the fee of {_text(coin, fee)}.", field="amount", code="amount_below_fee"
        )
    _daily_limit_check(user_id=user_id, coin=coin, amount=amount, now=now)
    candidate = risk_rules.Candidate(
        user_id=user_id, coin=coin, address=address, amount=amount, internal=to_user_id is not None
    )
    verdicts = risk_rules.rules_evaluate(candidate=candidate, now=now)
    refused = risk_rules.refusal(verdicts)
    if refused is not None:
        raise WithdrawalRefused(refused.message, field="to_address", code=refused.code)
    held_for_review = risk_rules.reviews(verdicts)
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
        return _replay(existing=existing, coin=coin, address=address, amount=amount)
    assets_services.balance_freeze(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=BusinessType.WITHDRAW_FREEZE,
        biz_ref=record.withdraw_no,
        memo=f"withdrawal {record.withdraw_no}",
    )
    risk_rules.verdicts_record(record=record, stage=RiskStage.APPLY, verdicts=verdicts, now=now)
    records.withdrawal_log(
        record=record,
        auditor_id=None,
        action="apply",
        to_status=WithdrawStatus.PENDING_REVIEW,
        remark=f"held for review by risk rules: {', '.join(v.rule for v in held_for_review)}"
        if held_for_review
        else "",
    )
    if amount <= coin.withdraw_audit_threshold and record.approvals_required == 1 and not held_for_review:
        _approved(
            record=record,
            coin=coin,
            auditor_id=None,
            action="auto_approve",
            remark="below the audit threshold",
            now=now,
        )
    else:
        records.withdrawal_event(record=record, now=now)
    logger.info("withdrawal %s applied: %s %s, status %s", record.withdraw_no, amount, coin.coin_id, record.status)
    return record


def withdrawal_approve(
    *, withdraw_id: int, auditor_id: int, remark: str = "", now: datetime | None = None
) -> WithdrawRecord:
    """
    Record an auditor's approval; the withdrawal is approved once enough different auditors agreed.

    One approval up to the coin's dual-audit threshold, two different auditors above it. Nobody
    approves their own withdrawal. An approved internal transfer is settled at once. The risk
    rules are evaluated again and recorded; if one refuses now (the address was blacklisted since
    the apply, say), the withdrawal is rejected instead (action risk_refuse) and its amount unfrozen.
    :raises Conflict: not pending review, the auditor's own withdrawal, or approved by them already.
    """
    moment = now or timezone.now()
    return retry_on_deadlock(
        functools.partial(_approve, withdraw_id=withdraw_id, auditor_id=auditor_id, remark=remark.strip(), now=moment)
    )


@transaction.atomic(durable=True)
def _approve(*, withdraw_id: int, auditor_id: int, remark: str, now: datetime) -> WithdrawRecord:
    record = records.withdrawal_lock(withdraw_id)
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
    candidate = risk_rules.Candidate(
        user_id=record.user_id,
        coin=coin,
        address=record.to_address,
        amount=record.amount,
        internal=record.to_user_id is not None,
        withdraw_id=record.id,
    )
    verdicts = risk_rules.rules_evaluate(candidate=candidate, now=now)
    risk_rules.verdicts_record(record=record, stage=RiskStage.APPROVE, verdicts=verdicts, now=now)
    refused = risk_rules.refusal(verdicts)
    if refused is not None:
        _risk_refused(record=record, coin=coin, verdict=refused, now=now)
        return record
    if len(approvals) + 1 < record.approvals_required:
        records.withdrawal_log(
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


def _risk_refused(*, record: WithdrawRecord, coin: CoinConfig, verdict: risk_rules.RuleVerdict, now: datetime) -> None:
    """Reject a withdrawal a risk rule refuses at approval: nobody can approve it into being paid."""
    assets_services.balance_unfreeze(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_UNFREEZE,
        biz_ref=record.withdraw_no,
        memo=f"withdrawal {record.withdraw_no} refused by risk rule {verdict.rule}",
    )
    record.audit_time = now
    record.audit_remark = verdict.message[:500]
    records.withdrawal_transition(
        record=record,
        auditor_id=None,
        action="risk_refuse",
        to_status=WithdrawStatus.REJECTED,
        remark=f"risk rule {verdict.rule}: {verdict.detail}",
    )
    records.withdrawal_event(record=record, now=now)
    logger.warning("withdrawal %s rejected at approval by risk rule %s", record.withdraw_no, verdict.rule)


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
    record = records.withdrawal_lock(withdraw_id)
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
    records.withdrawal_audited(record=record, auditor_id=auditor_id, remark=remark, now=now)
    records.withdrawal_transition(
        record=record, auditor_id=auditor_id, action="reject", to_status=WithdrawStatus.REJECTED, remark=remark
    )
    records.withdrawal_event(record=record, now=now)
    return record


def withdrawal_cancel(*, user_id: int, withdraw_no: str, now: datetime | None = None) -> WithdrawRecord:
    """
    Cancel the user's own withdrawal while it waits for review, and unfreeze its amount (WITHDRAW_CANCEL).

    Allowed only while it is pending review, before any auditor acted on it (a first approval of
    two is a decision: the four-eyes review has begun and its log must not end in the applicant's
    hands) and so before anything was signed. Idempotent: cancelling a cancelled withdrawal
    returns it unchanged, and the amount is unfrozen once.
    :raises NotFound: the user has no withdrawal with this number.
    :raises WithdrawalNotCancellable: approved, rejected, on its way or settled, or an auditor acted on it.
    """
    record = withdrawals_selectors.withdrawal_get(user_id=user_id, withdraw_no=withdraw_no)
    moment = now or timezone.now()
    return retry_on_deadlock(functools.partial(_cancel, withdraw_id=record.id, now=moment))


@transaction.atomic(durable=True)
def _cancel(*, withdraw_id: int, now: datetime) -> WithdrawRecord:
    # The withdrawal row first, then the balance (in balance_unfreeze): the order approve, reject
    # and the payout lock in, so a cancel racing any of them waits for it and sees its outcome.
    record = records.withdrawal_lock(withdraw_id)
    if record.status == WithdrawStatus.CANCELLED:
        return record
    signed = record.tx_hash or PayoutWithdrawal.objects.filter(withdraw_id=record.id).exists()
    if record.status != WithdrawStatus.PENDING_REVIEW or signed:
        raise WithdrawalNotCancellable(
            f"Withdrawal {record.withdraw_no} is {record.get_status_display()}: only a withdrawal waiting for "
            "review can be cancelled."
        )
    if record.audit_logs.filter(auditor__isnull=False).exists():
        raise WithdrawalNotCancellable(
            f"An auditor has already approved withdrawal {record.withdraw_no} once: it can no longer be cancelled."
        )
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    assets_services.balance_unfreeze(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_CANCEL,
        biz_ref=record.withdraw_no,
        memo=f"withdrawal {record.withdraw_no} cancelled by its owner",
    )
    records.withdrawal_transition(
        record=record, auditor_id=None, action="cancel", to_status=WithdrawStatus.CANCELLED, remark="by its owner"
    )
    records.withdrawal_event(record=record, now=now)
    logger.info("withdrawal %s cancelled by its owner", record.withdraw_no)
    return record


# --- steps -----------------------------------------------------------------------------------------


def _replay(*, existing: WithdrawRecord, coin: CoinConfig, address: str, amount: Decimal) -> WithdrawRecord:
    # The key column compares byte for byte (ExactCharField), so existing was stored under this very key.
    if (existing.coin_id, existing.to_address, existing.amount) != (coin.coin_id, address, amount):
        raise IdempotencyKeyReused(
            f"Idempotency key {existing.idempotency_key!r} was used for another withdrawal.", field="idempotency_key"
        )
    return existing


def _internal_recipient(*, user_id: int, chain_id: str, address: str) -> int | None:
    """The user whose deposit address this is (an internal transfer), or None for an outside address."""
    ours = addresses_selectors.address_find(chain_id=chain_id, address=address)
    if ours is None:
        return None
    if ours.user_id is None:
        raise WithdrawalRefused(
            "This address belongs to the exchange's own wallets.", field="to_address", code="exchange_address"
        )
    if ours.user_id == user_id:
        raise WithdrawalRefused("This is your own deposit address.", field="to_address", code="own_deposit_address")
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
            f"The withdrawal fee of {coin.coin_id} is finer than its precision: ops must correct it.",
            field="coin",
            code="fee_misconfigured",
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
            f"The daily withdrawal limit of {_text(coin, coin.withdraw_daily_limit)} would be exceeded "
            f"({_text(coin, used)} used today).",
            field="amount",
            code="daily_limit_exceeded",
        )


def _approved(
    *, record: WithdrawRecord, coin: CoinConfig, auditor_id: int | None, action: str, remark: str, now: datetime
) -> None:
    if auditor_id is not None:
        records.withdrawal_audited(record=record, auditor_id=auditor_id, remark=remark, now=now)
    records.withdrawal_transition(
        record=record, auditor_id=auditor_id, action=action, to_status=WithdrawStatus.APPROVED, remark=remark
    )
    if record.to_user_id is not None:
        _internal_settle(record=record, coin=coin, now=now)
    records.withdrawal_event(record=record, now=now)


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
    records.withdrawal_fee_book(record=record)  # none today: an internal transfer is free
    record.complete_time = now
    record.confirmations = None
    records.withdrawal_transition(
        record=record, auditor_id=None, action="settle_internal", to_status=WithdrawStatus.COMPLETED, remark="off chain"
    )
