"""
The kinds of four-eyes change this app applies: a coin's risky settings, clearing a breaker, and
adding to or removing from the blacklist (see controls.proposals).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from coins import services as coins_services
from coins.models import CoinConfig
from controls import breakers, proposals, services
from controls.models import SettingsChange
from wallet_project.errors import WalletError

COIN_SETTINGS = "coin_config"
COIN_PERMISSION = "coins.change_coinconfig"


def _shown(value: object) -> str:
    return "—" if value is None or value == "" else str(proposals.jsonable(value))


def coin_settings_propose(
    *, coin_id: str, values: Mapping[str, object], user: AbstractBaseUser, reason: str, now: datetime | None = None
) -> SettingsChange:
    """
    Propose new values of a coin's four-eyes settings (coins.services.FOUR_EYES_FIELDS).

    The values before are read under the coin's row lock; a field whose value would not change is
    left out. Nothing is written to the coin before a second person approves.
    :raises WalletError: a field that is not a four-eyes setting, or no change at all.
    :raises NotPermitted, ProposalPending: as proposals.change_propose_in.
    """
    foreign = sorted(set(values) - set(coins_services.FOUR_EYES_FIELDS))
    if foreign:
        raise WalletError(f"Not a four-eyes setting: {', '.join(foreign)}.", code="not_four_eyes")
    moment = now or timezone.now()
    with transaction.atomic(durable=True):
        coin = CoinConfig.objects.select_for_update().get(coin_id=coin_id)
        before: dict[str, object] = {}
        after: dict[str, object] = {}
        for name, value in values.items():
            current = getattr(coin, name)
            proposed = CoinConfig._meta.get_field(name).to_python(value)
            if proposed != current:
                before[name], after[name] = current, proposed
        if not after:
            raise WalletError("Nothing would change.", code="no_change")
        changes = ", ".join(f"{name} {_shown(before[name])} → {_shown(after[name])}" for name in after)
        return proposals.change_propose_in(
            kind=COIN_SETTINGS,
            target=coin.coin_id,
            summary=f"{coin.coin_id}: {changes}",
            before=before,
            after=after,
            reason=reason,
            user=user,
            now=moment,
        )


def _coin_settings_apply(change: SettingsChange, approver: AbstractBaseUser, now: datetime) -> None:
    try:
        coins_services.coin_settings_apply(coin_id=change.target, expected=change.before, values=change.after)
    except coins_services.CoinSettingsChanged as moved:
        raise proposals.ProposalStale(moved.message) from None
    except ValidationError as invalid:
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in invalid.message_dict.items())
        raise proposals.ProposalStale(f"the coin's settings would be invalid now ({problems})") from None


def register() -> None:
    proposals.kind_register(
        proposals.ChangeKind(
            code=COIN_SETTINGS,
            label="coin settings",
            permission=COIN_PERMISSION,
            apply=_coin_settings_apply,
        )
    )
    proposals.kind_register(
        proposals.ChangeKind(
            code=breakers.CLEAR_KIND,
            label="clear a circuit breaker",
            permission=breakers.CLEAR_PERMISSION,
            apply=breakers.breaker_clear_apply,
        )
    )
    proposals.kind_register(
        proposals.ChangeKind(
            code=services.BLACKLIST_ADD,
            label="add to the blacklist",
            permission=services.BLACKLIST_PERMISSION,
            apply=services.blacklist_add_apply,
        )
    )
    proposals.kind_register(
        proposals.ChangeKind(
            code=services.BLACKLIST_REMOVE,
            label="remove from the blacklist",
            permission=services.BLACKLIST_PERMISSION,
            apply=services.blacklist_remove_apply,
        )
    )
