"""
Every write to balances, flows and the event outbox.

The five postings (credit, debit, freeze, unfreeze, settle_frozen) are building blocks: they join
the caller's transaction (`atomic(savepoint=False)`), lock the (user, coin) balance row first,
and write the balance, one flow row and one ASSET_CHANGE outbox row together. A posting is
idempotent per (business_type, biz_ref): a replay with the same user, coin and amount returns the
first flow and changes nothing; a replay that differs raises FlowConflict.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from assets import events
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from wallet_project.errors import WalletError
from wallet_project.ids import business_no
from wallet_project.money import exact


class InsufficientFunds(WalletError):
    code = "insufficient_funds"


class FlowConflict(WalletError):
    code = "flow_conflict"


def balance_lock(*, user_id: int, coin: CoinConfig) -> Balance:
    """
    Lock and return the (user, coin) balance row, creating it on first use.

    Callers that read other rows before posting (a withdrawal checking its daily limit) take
    this lock first, so that every writer of one balance is serialised in the same order.
    """
    with transaction.atomic(savepoint=False):
        try:
            return Balance.objects.select_for_update().get(user_id=user_id, coin=coin)
        except Balance.DoesNotExist:
            pass
        try:
            # A savepoint: losing the insert race to another first posting is expected.
            with transaction.atomic():
                Balance.objects.create(user_id=user_id, coin=coin)
        except IntegrityError:
            pass
        return Balance.objects.select_for_update().get(user_id=user_id, coin=coin)


def outbox_enqueue(*, event: events.Event) -> OutboxMessage:
    """Store an event for the relay, inside the caller's transaction so it commits with the change."""
    with transaction.atomic(savepoint=False):
        return OutboxMessage.objects.create(
            message_id=event.header.message_id,
            topic=event.header.topic,
            tags=event.header.tags,
            keys=event.header.keys,
            partition_key=event.partition_key,
            payload=event.as_dict(),
        )


def _post(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    available_sign: int,
    frozen_sign: int,
    ref_tx_hash: str,
    memo: str,
) -> Flow:
    checked = coins_selectors.amount_check(coin=coin, amount=amount)
    if not biz_ref or len(biz_ref) > 64:
        raise WalletError("A posting needs a business reference of 1 to 64 characters.", field="biz_ref")
    with exact():
        available_delta = checked * available_sign
        frozen_delta = checked * frozen_sign

    with transaction.atomic(savepoint=False):
        balance = balance_lock(user_id=user_id, coin=coin)
        # Every writer of this balance waits on the lock above, so under READ COMMITTED this
        # lookup sees a replay that committed while we waited.
        booked = Flow.objects.filter(business_type=business_type, biz_ref=biz_ref).first()
        if booked is not None:
            same = (booked.user_id, booked.coin_id, booked.amount, booked.frozen_amount) == (
                user_id,
                coin.coin_id,
                available_delta,
                frozen_delta,
            )
            if not same:
                raise FlowConflict(f"{BusinessType(business_type).name} {biz_ref} is already booked differently.")
            return booked

        with exact():
            available_after = balance.available + available_delta
            frozen_after = balance.frozen + frozen_delta
        if available_after < 0:
            raise InsufficientFunds("The available balance is too low.", field="amount")
        if frozen_after < 0:
            raise InsufficientFunds("The frozen balance is too low.", field="amount")

        now = timezone.now()
        flow = Flow.objects.create(
            flow_no=business_no(prefix="F", now=now),
            user_id=user_id,
            coin=coin,
            business_type=business_type,
            biz_ref=biz_ref,
            amount=available_delta,
            balance_before=balance.available,
            balance_after=available_after,
            frozen_amount=frozen_delta,
            frozen_before=balance.frozen,
            frozen_after=frozen_after,
            ref_tx_hash=ref_tx_hash,
            memo=memo,
        )
        balance.available = available_after
        balance.frozen = frozen_after
        balance.save(update_fields=["available", "frozen", "update_time"])
        outbox_enqueue(
            event=events.asset_changed(
                flow_no=flow.flow_no,
                user_id=user_id,
                coin_id=coin.coin_id,
                business_type=int(business_type),
                amount=available_delta,
                balance_before=flow.balance_before,
                balance_after=available_after,
                frozen_amount=frozen_delta,
                frozen_before=flow.frozen_before,
                frozen_after=frozen_after,
                biz_ref=biz_ref,
                ref_tx_hash=ref_tx_hash,
                at=now,
            )
        )
        return flow


def balance_credit(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Add amount to the available balance, once per (business_type, biz_ref).

    :raises InvalidAmount: amount is not positive, not a number or finer than the coin allows.
    :raises FlowConflict: biz_ref was already booked for another user, coin or amount.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=1,
        frozen_sign=0,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_debit(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Take amount from the available balance, once per (business_type, biz_ref).

    :raises InsufficientFunds: the available balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=-1,
        frozen_sign=0,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_freeze(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Move amount from available to frozen, once per (business_type, biz_ref).

    :raises InsufficientFunds: the available balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=-1,
        frozen_sign=1,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_unfreeze(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Move amount from frozen back to available, once per (business_type, biz_ref).

    :raises InsufficientFunds: the frozen balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=1,
        frozen_sign=-1,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_settle_frozen(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Remove amount from the frozen balance for good (a withdrawal paid out), once per reference.

    :raises InsufficientFunds: the frozen balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=0,
        frozen_sign=-1,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )
