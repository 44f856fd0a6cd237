"""
Reorg shortfalls: a credited deposit orphaned by a reorg when the balance no longer covers it.

The user was credited with money that does not exist and may have spent part of it. Say 3 ETH
credited, 2 withdrawn, then the block is orphaned: the user owns 1 - 3 = -2 ETH. The design:

- The reversal takes what is available (REORG_REVERSAL, 1 ETH) and books the rest as the user's
  debt (REORG_DEBT, 2 ETH) in the ledger (`asset_balance.debt`, see assets.debts), with a flow and
  an ASSET_CHANGE event each. The ledger's net position, available + frozen - debt, is then what
  the user truly owns (-2) at every moment, and Σ flows = balance holds for every column.
- Nothing is frozen. The former design froze what was left and left the shortfall outside the
  ledger: the net position was wrong by the whole deposit, a re-mined deposit was credited in
  full (3 available + 1 frozen while the user owned 1), and the frozen part could be released by
  no one. A debt is a negative balance kept in a non-negative column; as a negative balance would,
  it is repaid first by every later posting that adds to the user's available balance of that
  coin (assets.services: REORG_DEBT_REPAY in the same statements): the re-mined deposit, any
  other deposit, a released withdrawal freeze. So the re-mined 3 ETH repays the 2 owed and 1
  lands in available: exactly what the user owns, with no rule that has to recognise "the same
  transaction again" (the reversal and the new crediting have references of their own, see
  RechargeRecord.generation).
- An AccountHold records the case: which deposit, what was reversed, what is owed. While the
  debt of its (user, coin) is open the user's withdrawals are held (selectors.withdrawals_held
  reads the ledger's debt, so the gate is exact even before the row's status catches up). The
  hold closes itself (REPAID) when the debt is gone: in the transaction of the deposit credit that
  repaid it, or, when something outside deposits repaid it (a withdrawal released, an
  adjustment), at the next confirmation tick of its chain (`account_holds_close_repaid`).
- Ops close a shortfall the ledger cannot: SETTLE (the user paid it back off-system,
  REORG_DEBT_SETTLE, and the same amount booked negative to the house account `treasury` as
  HOUSE_DEBT_SETTLED_OFF_CHAIN: the money is the exchange's but not on chain, so the ledger still
  adds up to what the chain holds until ops bring it on chain as a treasury receipt) or WRITE OFF
  (the exchange takes the loss, REORG_DEBT_WRITE_OFF, with an
  alert, and the same amount booked to the house account `losses` as HOUSE_REORG_LOSS, so the
  ledger still adds up to what the chain holds: the user's debt is gone, the house carries it). Each
  clears the whole debt of the (user, coin) and closes all its active holds, under the balance
  lock then the hold locks (the order of every writer: deposits lock the balance before they
  close holds), is idempotent, needs its own permission in the admin and a remark, and writes
  who, when and why on the hold. There is no "mark resolved" that leaves a debt or a freeze.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q

from assets import debts as assets_debts
from assets import events as assets_events
from assets import house as assets_house
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import BusinessType, HouseAccount
from coins.models import CoinConfig
from monitoring import services as monitoring_services
from monitoring.models import Severity
from recharges.models import AccountHold, HoldStatus, RechargeRecord
from wallet_project.db import retry_on_deadlock
from wallet_project.errors import Conflict, WalletError
from wallet_project.money import exact

logger = logging.getLogger(__name__)

# Tests set this to a callable run at the named step (to pause there while the locks are held, or
# to fail there), as recharges.services.fault_hook. Always None in a running service.
fault_hook: Callable[[str], None] | None = None

# Holds made before debts were booked: a freeze to take, or a shortfall the ledger never saw.
LEGACY = Q(frozen_amount__gt=0) | Q(shortfall__gt=F("debt_amount"))


def credit_reverse(*, record: RechargeRecord, now: datetime) -> None:
    """
    Take back a credited deposit whose block was orphaned, in the caller's transaction.

    What the available balance holds is reversed; if that is not the whole deposit, the rest
    is booked as the user's debt and an AccountHold holds their withdrawals until it is repaid,
    settled or written off. A critical alert either way.
    """
    coin = record.coin
    reversal = assets_debts.balance_reverse_credit(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        biz_ref=record.biz_ref,
        ref_tx_hash=record.tx_hash,
        memo=f"deposit {record.recharge_no} orphaned by a reorg",
    )
    text = (
        f"credited deposit {record.recharge_no} of user {record.user_id} "
        f"({assets_events.amount_str(record.amount)} {coin.coin_id}, "
        f"block {record.block_number}) was orphaned by a reorg"
    )
    if reversal.debt is None:
        text += ": reversed"
    else:
        AccountHold.objects.get_or_create(
            biz_ref=record.biz_ref,
            defaults={
                "user_id": record.user_id,
                "coin": coin,
                "recharge": record,
                "amount": record.amount,
                "reversed_amount": reversal.reversed_amount,
                "shortfall": reversal.debt_amount,
                "debt_amount": reversal.debt_amount,
                "reason": f"deposit {record.recharge_no} orphaned by a reorg after crediting",
            },
        )
        reversed_text = assets_events.amount_str(reversal.reversed_amount)
        debt_text = assets_events.amount_str(reversal.debt_amount)
        text += (
            f"; {reversed_text} reversed, {debt_text} booked as the user's debt, "
            "withdrawals held until it is repaid by their next credits, or settled or written off by ops"
        )
    logger.critical("%s", text)
    monitoring_services.alert_raise(
        severity=Severity.CRITICAL, kind="DEEP_REORG", subject=f"coin {coin.coin_id}", message=text, now=now
    )


def holds_close_repaid(*, user_ids: set[int], coin_id: str, now: datetime) -> int:
    """
    Close (REPAID) the active holds of these users and coin, whose debt the caller just repaid to zero.

    In the caller's transaction, which holds the balance locks. Returns how many were closed.
    """
    if not user_ids:
        return 0
    closed = (
        AccountHold.objects.filter(status=HoldStatus.ACTIVE, coin_id=coin_id, user_id__in=sorted(user_ids))
        .exclude(LEGACY)
        .update(status=HoldStatus.REPAID, resolve_time=now)
    )
    if closed:
        logger.info("%s reorg hold(s) of %s repaid by credits", closed, coin_id)
    return closed


def account_holds_close_repaid(*, coin_ids: list[str], now: datetime) -> int:
    """
    Close (REPAID) the active holds of these coins whose debt the ledger shows repaid.

    For debts repaid outside the deposit path (a released withdrawal freeze, an internal
    transfer, an adjustment). Withdrawals never waited for this: their gate reads the debt.
    One query when no hold is active (every confirmation tick); a transaction only to close.
    """
    active = list(
        AccountHold.objects.filter(status=HoldStatus.ACTIVE, coin_id__in=coin_ids)
        .exclude(LEGACY)
        .values_list("id", "user_id", "coin_id")
    )
    if not active:
        return 0
    debts = assets_selectors.debts_of(pairs={(user_id, coin_id) for _, user_id, coin_id in active})
    repaid = [hold_id for hold_id, user_id, coin_id in active if debts[(user_id, coin_id)] == 0]
    return _holds_mark_repaid(hold_ids=repaid, now=now) if repaid else 0


@transaction.atomic(durable=True)
def _holds_mark_repaid(*, hold_ids: list[int], now: datetime) -> int:
    # status=ACTIVE again: a hold settled meanwhile keeps what ops wrote on it. A debt booked
    # meanwhile comes with a hold of its own, which is not in hold_ids.
    return AccountHold.objects.filter(id__in=hold_ids, status=HoldStatus.ACTIVE).update(
        status=HoldStatus.REPAID, resolve_time=now
    )


# --- ops -------------------------------------------------------------------------------------------

_CLOSINGS = {
    HoldStatus.SETTLED: BusinessType.REORG_DEBT_SETTLE,
    HoldStatus.WRITTEN_OFF: BusinessType.REORG_DEBT_WRITE_OFF,
}


def account_hold_settle(*, hold_id: int, operator: AbstractBaseUser, remark: str, now: datetime) -> AccountHold:
    """
    Settle the hold's shortfall: the user paid it back off-system.

    Clears the whole debt of the hold's (user, coin) (REORG_DEBT_SETTLE), takes any freeze left
    by a hold made before debts were booked, and closes every active hold of that user and coin
    with who, when and why. Settling a settled hold again returns it unchanged.
    :raises WalletError: no remark, or a remark longer than 255 characters.
    :raises Conflict: the hold was closed otherwise (repaid, written off, resolved before).
    """
    return _close(hold_id=hold_id, status=HoldStatus.SETTLED, operator=operator, remark=remark, now=now)


def account_hold_write_off(*, hold_id: int, operator: AbstractBaseUser, remark: str, now: datetime) -> AccountHold:
    """
    Write the hold's shortfall off: the exchange takes the loss.

    As account_hold_settle, with REORG_DEBT_WRITE_OFF, and a warning alert naming the loss.
    :raises WalletError, Conflict: as account_hold_settle.
    """
    return _close(hold_id=hold_id, status=HoldStatus.WRITTEN_OFF, operator=operator, remark=remark, now=now)


def _close(*, hold_id: int, status: HoldStatus, operator: AbstractBaseUser, remark: str, now: datetime) -> AccountHold:
    remark = remark.strip()
    if not remark:
        raise WalletError("Say why: a remark is required.", field="remark")
    if len(remark) > 255:
        raise WalletError("A remark has at most 255 characters.", field="remark")
    return retry_on_deadlock(
        lambda: _close_commit(hold_id=hold_id, status=status, operator=operator, remark=remark, now=now)
    )


@transaction.atomic(durable=True)
def _close_commit(
    *, hold_id: int, status: HoldStatus, operator: AbstractBaseUser, remark: str, now: datetime
) -> AccountHold:
    return account_hold_close_in(hold_id=hold_id, status=status, operator=operator, remark=remark, now=now)


@transaction.atomic(savepoint=False)
def account_hold_close_in(
    *, hold_id: int, status: HoldStatus, operator: AbstractBaseUser, remark: str, now: datetime
) -> AccountHold:
    """
    Settle or write off the hold (status SETTLED or WRITTEN_OFF) in the caller's transaction.

    The building block of account_hold_settle / account_hold_write_off, for an approved four-eyes
    proposal (recharges.hold_changes) that applies it in the approval's transaction.
    :raises Conflict: as account_hold_settle.
    """
    user_id, coin_id = AccountHold.objects.filter(id=hold_id).values_list("user_id", "coin_id").get()
    coin = CoinConfig.objects.get(coin_id=coin_id)
    # The balance first, then the holds: the order of deposits_settle, which locks balances and
    # then closes the holds its credits repaid.
    assets_services.balance_lock(user_id=user_id, coin=coin)
    holds = list(
        AccountHold.objects.select_for_update()
        .filter(Q(id=hold_id) | Q(user_id=user_id, coin_id=coin_id, status=HoldStatus.ACTIVE))
        .order_by("id")
    )
    target = next(hold for hold in holds if hold.id == hold_id)
    if target.status == status:
        return target  # done already: the same action twice changes nothing
    if target.status != HoldStatus.ACTIVE:
        raise Conflict(f"The hold is {HoldStatus(target.status).label}: nothing is left to settle or write off.")
    action = "settled" if status == HoldStatus.SETTLED else "written off"
    memo = f"reorg shortfall {action} by {operator.get_username()}: {remark}"
    unbooked = Decimal(0)
    for hold in holds:
        if hold.frozen_amount > 0:
            # A hold made before debts were booked froze what the balance held: that part of
            # the orphaned deposit is taken now, as the reversal would take it today.
            assets_services.balance_settle_frozen(
                user_id=user_id,
                coin=coin,
                amount=hold.frozen_amount,
                business_type=BusinessType.REORG_REVERSAL,
                biz_ref=hold.biz_ref,
                memo=memo[:255],
            )
        with exact():
            unbooked += hold.shortfall - hold.debt_amount
    cleared = assets_debts.balance_debt_clear(
        user_id=user_id, coin=coin, business_type=_CLOSINGS[status], biz_ref=target.biz_ref, memo=memo
    )
    with exact():
        resolved = (-cleared.debt_amount if cleared is not None else Decimal(0)) + unbooked
    for hold in holds:
        hold.status = status
        hold.resolve_time = now
        hold.resolved_by_id = operator.pk
        hold.resolve_remark = remark if hold.id == hold_id else f"{remark} (with hold {hold_id})"[:255]
        hold.resolved_amount = resolved if hold.id == hold_id else Decimal(0)
        hold.save(update_fields=["status", "resolve_time", "resolved_by", "resolve_remark", "resolved_amount"])
    text = (
        f"reorg shortfall of user {user_id} ({assets_events.amount_str(resolved)} {coin_id}, hold {hold_id}, "
        f"{len(holds)} hold(s) closed) {action} by {operator.get_username()}: {remark}"
    )
    if status == HoldStatus.SETTLED and resolved > 0:
        # The user's debt is gone and the chain still lacks the coin: the house is short of it
        # until ops move what the user paid onto the chain (booked then as a treasury receipt).
        assets_house.house_book(
            coin=coin,
            account=HouseAccount.TREASURY,
            amount=-resolved,
            business_type=BusinessType.HOUSE_DEBT_SETTLED_OFF_CHAIN,
            biz_ref=target.biz_ref,
            memo=memo[:255],
        )
    if status == HoldStatus.WRITTEN_OFF:
        if resolved > 0:
            # The user no longer owes it, and the chain never held it: the exchange's loss.
            assets_house.house_book(
                coin=coin,
                account=HouseAccount.LOSSES,
                amount=-resolved,
                business_type=BusinessType.HOUSE_REORG_LOSS,
                biz_ref=target.biz_ref,
                memo=memo[:255],
            )
        monitoring_services.alert_raise(
            severity=Severity.WARNING,
            kind="REORG_DEBT_WRITTEN_OFF",
            subject=f"account hold {hold_id}",
            message=f"{text}; the exchange carries this loss (booked to the house account {HouseAccount.LOSSES.value})",
            now=now,
        )
    logger.warning("%s", text)
    if fault_hook is not None:
        fault_hook("shortfall.closed")
    return target
