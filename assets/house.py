"""
The house accounts: the exchange's own money in the same ledger as its users'.

Per coin, what the exchange holds on chain belongs either to a user (asset_balance) or to the
house: withdrawal fees it collected (+), network fees it paid for payouts, sweeps, gas top-ups and
treasury transfers (-), treasury receipts from outside (+) and transfers out (-), deposits on chain
credited to nobody (+), reorg losses it wrote off (-). With every such posting booked here:

    Σ user (available + frozen - debt) + Σ house balances == on-chain holdings - in-flight

which is what reconciliation checks. A house balance is signed (an expense account is negative).

`house_book` is a building block like the user postings of assets.services: it joins the caller's
transaction, locks the (account, coin) row, writes the balance, one house_flow row and one
ASSET_CHANGE outbox row together, and is idempotent per (business_type, biz_ref): a replay with the
same account, coin and amount returns the first flow; one that differs raises FlowConflict.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from assets import events
from assets.models import BusinessType, HouseAccount, HouseBalance, HouseFlow
from assets.services import FlowConflict, outbox_enqueue
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from wallet_project.errors import WalletError
from wallet_project.ids import business_no
from wallet_project.money import exact

HOUSE_TYPES = frozenset(t for t in BusinessType if 20 <= t <= 29)


def house_book(
    *,
    coin: CoinConfig,
    account: HouseAccount,
    amount: Decimal,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> HouseFlow:
    """
    Add `amount` (signed, non-zero, at the coin's precision) to a house account; return its flow.

    :raises WalletError: a zero amount, one finer than the coin's precision, a user business type.
    :raises FlowConflict: (business_type, biz_ref) already booked with another account, coin or amount.
    """
    if business_type not in HOUSE_TYPES:
        raise WalletError(f"{BusinessType(business_type).name} is not a house posting.", field="business_type")
    if not biz_ref or len(biz_ref) > 64:
        raise WalletError("A posting needs a business reference of 1 to 64 characters.", field="biz_ref")
    magnitude = coins_selectors.amount_check(coin=coin, amount=abs(amount))
    signed = magnitude if amount > 0 else -magnitude
    with transaction.atomic(savepoint=False):
        balance = _balance_lock(coin=coin, account=account)
        booked = HouseFlow.objects.filter(business_type=business_type, biz_ref=biz_ref).first()
        if booked is not None:
            if (booked.account, booked.coin_id, booked.amount) != (str(account), coin.coin_id, signed):
                raise FlowConflict(f"{BusinessType(business_type).name} {biz_ref} is already booked differently.")
            return booked
        now = timezone.now()
        with exact():
            after = balance.balance + signed
        flow = HouseFlow(
            flow_no=business_no(prefix="H", now=now),
            account=account,
            coin_id=coin.coin_id,
            business_type=business_type,
            biz_ref=biz_ref,
            amount=signed,
            balance_before=balance.balance,
            balance_after=after,
            ref_tx_hash=ref_tx_hash,
            memo=memo[:255],
            create_time=now,
        )
        try:
            with transaction.atomic():
                flow.save(force_insert=True)
        except IntegrityError:
            raise FlowConflict(f"{BusinessType(business_type).name} {biz_ref} is already booked.") from None
        HouseBalance.objects.filter(id=balance.id).update(balance=after, update_time=now)
        outbox_enqueue(
            event=events.house_changed(
                flow_no=flow.flow_no,
                account=str(account),
                coin_id=coin.coin_id,
                business_type=int(business_type),
                amount=signed,
                balance_before=flow.balance_before,
                balance_after=after,
                biz_ref=biz_ref,
                ref_tx_hash=ref_tx_hash,
                at=now,
            )
        )
        return flow


def _balance_lock(*, coin: CoinConfig, account: HouseAccount) -> HouseBalance:
    locked = HouseBalance.objects.select_for_update().filter(account=account, coin=coin).first()
    if locked is not None:
        return locked
    try:
        with transaction.atomic():
            HouseBalance.objects.create(account=account, coin=coin)
    except IntegrityError:
        pass  # created by a concurrent first posting; lock theirs
    return HouseBalance.objects.select_for_update().get(account=account, coin=coin)
