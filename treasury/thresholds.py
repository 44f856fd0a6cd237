"""
A hot address's min_balance / max_balance per coin: changed only by four eyes.

One operator proposes (threshold_propose: the admin action or `propose_hot_threshold`), a second
one holding the same permission approves it under *Risk controls → Proposed changes*; only then
is the row written (controls.proposals). Registered at start by TreasuryConfig.ready.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from addresses.models import AddressType, WalletAddress
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from controls import proposals as controls_proposals
from controls.models import SettingsChange
from treasury.models import HotThreshold
from wallet_project.errors import WalletError

KIND = "hot_threshold"
PERMISSION = "treasury.set_hot_threshold"


def _check(*, coin: CoinConfig, value: Decimal | None, name: str) -> Decimal | None:
    if value is None:
        return None
    if value < 0:
        raise WalletError(f"{name} cannot be negative.", field=name, code="invalid_amount")
    if value == 0:
        return value
    return coins_selectors.amount_check(coin=coin, amount=value, field=name)


def _shown(value: object) -> str:
    return "none" if value is None else str(value)


def threshold_propose(
    *,
    address_id: int,
    coin_id: str,
    min_balance: Decimal | None,
    max_balance: Decimal | None,
    user: AbstractBaseUser,
    reason: str,
    now: datetime | None = None,
) -> SettingsChange:
    """
    Propose new limits (None: no limit on that side) of a hot address for one coin of its chain.

    Nothing is written before a second person approves.
    :raises WalletError: not a hot address, a coin of another chain, a negative or too fine amount,
        min above max, or nothing would change.
    :raises NotPermitted, ProposalPending: as controls.proposals.change_propose_in.
    """
    moment = now or timezone.now()
    with transaction.atomic(durable=True):
        address = WalletAddress.objects.filter(id=address_id, address_type=AddressType.HOT).first()
        if address is None:
            raise WalletError(f"Address {address_id} is not a hot address.", field="address", code="not_hot")
        coin = CoinConfig.objects.filter(coin_id=coin_id, chain_id=address.chain_id).first()
        if coin is None:
            raise WalletError(
                f"{coin_id} is not a coin of chain {address.chain_id}.", field="coin", code="unknown_coin"
            )
        low = _check(coin=coin, value=min_balance, name="min_balance")
        high = _check(coin=coin, value=max_balance, name="max_balance")
        if low is not None and high is not None and low > high:
            raise WalletError("min_balance is above max_balance.", field="min_balance", code="min_above_max")
        row = HotThreshold.objects.select_for_update().filter(address=address, coin=coin).first()
        before = {"min_balance": row.min_balance if row else None, "max_balance": row.max_balance if row else None}
        after = {"min_balance": low, "max_balance": high}
        if before == after:
            raise WalletError("Nothing would change.", code="no_change")
        return controls_proposals.change_propose_in(
            kind=KIND,
            target=f"{coin.coin_id} {address.address}",
            summary=f"{coin.coin_id} limits of hot address {address.address}: min {_shown(before['min_balance'])} → "
            f"{_shown(low)}, max {_shown(before['max_balance'])} → {_shown(high)}",
            before=before,
            after=after,
            reason=reason,
            user=user,
            now=moment,
        )


def _decimal(value: object) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _apply(change: SettingsChange, approver: AbstractBaseUser, now: datetime) -> None:
    coin_id, _, address_text = change.target.partition(" ")
    address = WalletAddress.objects.get(address=address_text, address_type=AddressType.HOT)
    expected = (_decimal(change.before["min_balance"]), _decimal(change.before["max_balance"]))
    row = HotThreshold.objects.select_for_update().filter(address=address, coin_id=coin_id).first()
    if row is None:
        if expected != (None, None):
            raise controls_proposals.ProposalStale("the limits were removed since")
        try:
            with transaction.atomic():
                row = HotThreshold.objects.create(address=address, coin_id=coin_id)
        except IntegrityError:
            raise controls_proposals.ProposalStale("the limits were set by another change meanwhile") from None
    elif (row.min_balance, row.max_balance) != expected:
        raise controls_proposals.ProposalStale(
            f"the limits are min {_shown(row.min_balance)} max {_shown(row.max_balance)} now"
        )
    row.min_balance = _decimal(change.after["min_balance"])
    row.max_balance = _decimal(change.after["max_balance"])
    row.save(update_fields=["min_balance", "max_balance", "update_time"])


def register() -> None:
    controls_proposals.kind_register(
        controls_proposals.ChangeKind(
            code=KIND, label="hot address min/max balance", permission=PERMISSION, apply=_apply
        )
    )
