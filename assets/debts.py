"""
Debts: a credit taken back beyond the balance (a reorg), and ops clearing what is left of it.

A debt is a negative available balance kept in a column of its own (`asset_balance.debt`) so that
no column is ever negative and each side keeps its own flows. It is booked here, only by
`balance_reverse_credit`, after the available balance has been taken to zero; it is repaid by
every later posting that adds to the available balance (assets.services, REORG_DEBT_REPAY), or
cleared by ops with `balance_debt_clear` (settled off-system, or written off). These postings
follow the ledger's rules: the balance row locked first, one flow and one ASSET_CHANGE event per
change, idempotent per (business_type, biz_ref), joining the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from assets.models import Balance, BusinessType, Flow, OutboxMessage
from assets.services import (
    FlowConflict,
    _balances_write_statements,
    _book,
    _checked_ref,
    balance_lock,
)
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from wallet_project.db import insert_statement, statements_run
from wallet_project.money import exact

# The two ways ops close a debt; both leave the available balance as it is.
CLEARING_TYPES = (BusinessType.REORG_DEBT_SETTLE, BusinessType.REORG_DEBT_WRITE_OFF)


@dataclass(frozen=True)
class Reversal:
    """What balance_reverse_credit booked: the part the available balance covered, and the debt."""

    reversed: Flow | None  # REORG_REVERSAL: taken from the available balance
    debt: Flow | None  # REORG_DEBT: the rest, owed by the user

    @property
    def reversed_amount(self) -> Decimal:
        return -self.reversed.amount if self.reversed is not None else Decimal(0)

    @property
    def debt_amount(self) -> Decimal:
        return self.debt.debt_amount if self.debt is not None else Decimal(0)


def balance_reverse_credit(
    *, user_id: int, coin: CoinConfig, amount: object, biz_ref: str, ref_tx_hash: str = "", memo: str = ""
) -> Reversal:
    """
    Take back a credit of amount: from the available balance as far as it goes (REORG_REVERSAL),
    the rest booked as the user's debt (REORG_DEBT), once per biz_ref.

    The frozen balance is left alone: it belongs to withdrawals in flight, and if one of them is
    released instead of paid, its unfreeze repays the debt. Joins the caller's transaction.
    :raises InvalidAmount: amount is not positive or finer than the coin allows.
    :raises FlowConflict: biz_ref was already reversed for another user, coin or amount.
    """
    checked = coins_selectors.amount_check(coin=coin, amount=amount)
    _checked_ref(biz_ref)
    with transaction.atomic(savepoint=False):
        balance = balance_lock(user_id=user_id, coin=coin)
        booked = {
            flow.business_type: flow
            for flow in Flow.objects.filter(
                business_type__in=[BusinessType.REORG_REVERSAL, BusinessType.REORG_DEBT], biz_ref=biz_ref
            )
        }
        if booked:
            replay = Reversal(
                reversed=booked.get(BusinessType.REORG_REVERSAL), debt=booked.get(BusinessType.REORG_DEBT)
            )
            with exact():
                total = replay.reversed_amount + replay.debt_amount
            if total != checked or any((f.user_id, f.coin_id) != (user_id, coin.coin_id) for f in booked.values()):
                raise FlowConflict(f"The reversal {biz_ref} is already booked differently.")
            return replay
        covered = min(balance.available, checked)
        with exact():
            shortfall = checked - covered
        now = timezone.now()
        booked_now: dict[int, tuple[Flow, OutboxMessage]] = {}
        if covered > 0:
            booked_now[BusinessType.REORG_REVERSAL] = _book(
                balance=balance,
                business_type=BusinessType.REORG_REVERSAL,
                biz_ref=biz_ref,
                available_delta=-covered,
                frozen_delta=Decimal(0),
                ref_tx_hash=ref_tx_hash,
                memo=memo,
                now=now,
            )
        if shortfall > 0:
            booked_now[BusinessType.REORG_DEBT] = _book(
                balance=balance,
                business_type=BusinessType.REORG_DEBT,
                biz_ref=biz_ref,
                available_delta=Decimal(0),
                frozen_delta=Decimal(0),
                debt_delta=shortfall,
                ref_tx_hash=ref_tx_hash,
                memo=f"{memo}: {covered} reversed, {shortfall} owed"[:255] if memo else "",
                now=now,
            )
        _write(balance=balance, booked=list(booked_now.values()))
        return Reversal(
            reversed=booked_now[BusinessType.REORG_REVERSAL][0] if BusinessType.REORG_REVERSAL in booked_now else None,
            debt=booked_now[BusinessType.REORG_DEBT][0] if BusinessType.REORG_DEBT in booked_now else None,
        )


def balance_debt_clear(
    *, user_id: int, coin: CoinConfig, business_type: BusinessType, biz_ref: str, memo: str = ""
) -> Flow | None:
    """
    Clear the whole debt of the (user, coin) balance, once per (business_type, biz_ref); the
    available and frozen balances do not change. Returns the flow, or None if there was no debt.

    business_type says why: REORG_DEBT_SETTLE (the user paid it back off-system) or
    REORG_DEBT_WRITE_OFF (the exchange takes the loss). A replay returns the first flow, whatever
    the debt is now. Joins the caller's transaction.
    :raises FlowConflict: biz_ref was already booked for another user or coin.
    """
    if business_type not in CLEARING_TYPES:
        raise ValueError(f"{business_type!r} does not clear a debt")
    _checked_ref(biz_ref)
    with transaction.atomic(savepoint=False):
        balance = balance_lock(user_id=user_id, coin=coin)
        booked = Flow.objects.filter(business_type=business_type, biz_ref=biz_ref).first()
        if booked is not None:
            if (booked.user_id, booked.coin_id) != (user_id, coin.coin_id):
                raise FlowConflict(f"{business_type.name} {biz_ref} is already booked differently.")
            return booked
        if balance.debt <= 0:
            return None
        flow, event = _book(
            balance=balance,
            business_type=business_type,
            biz_ref=biz_ref,
            available_delta=Decimal(0),
            frozen_delta=Decimal(0),
            debt_delta=-balance.debt,
            ref_tx_hash="",
            memo=memo[:255],
            now=timezone.now(),
        )
        _write(balance=balance, booked=[(flow, event)])
        return flow


def _write(*, balance: Balance, booked: list[tuple[Flow, OutboxMessage]]) -> None:
    if not booked:
        return
    statements_run(
        [
            insert_statement([flow for flow, _ in booked]),
            *_balances_write_statements(balances=[balance], with_debt=True),
            insert_statement([event for _, event in booked]),
        ]
    )
