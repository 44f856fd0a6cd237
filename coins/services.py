"""Writes of coin_config."""

from __future__ import annotations

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction

from coins import selectors as coins_selectors
from coins.models import CoinConfig
from wallet_project.errors import Conflict

COIN_LIST_CACHE_KEY = "coins:list:v1"

# What a coin's base units mean, fixed when the coin is created. Every stored amount was converted
# with them: changing decimals would re-price every balance, deposit and withdrawal at once (ETH at
# 6 decimals credits 10**12 wei as 1,000,000 ETH), and the id, chain and native flag say which
# transfers are this coin. A coin configured wrongly is replaced by a new coin, never re-defined.
IDENTITY_FIELDS = ("coin_id", "chain_id", "decimals", "is_native")

# Settings a change of which takes effect only once a second person approves it (controls.proposals):
# what decides which transfers are this coin, when a deposit counts, how much may leave and who
# looks at it first. The one list of them: a new risky setting (sweep thresholds...) joins it here
# and the admin turns its edits into proposals.
FOUR_EYES_FIELDS = (
    "contract_address",
    "required_confirmations",
    "min_recharge_amount",
    "max_recharge_amount",
    "min_withdraw_amount",
    "max_withdraw_amount",
    "withdraw_daily_limit",
    "withdraw_fee",
    "withdraw_fee_type",
    "withdraw_fee_rate",
    "withdraw_audit_threshold",
    "withdraw_dual_audit_threshold",
    "risk_first_address_amount",
    "risk_velocity_amount",
    "sweep_threshold",
)


class CoinSettingsChanged(Conflict):
    """A setting no longer has the value a proposal was made against."""

    code = "coin_settings_changed"


def _editable_fields() -> list[str]:
    return [f.name for f in CoinConfig._meta.concrete_fields if f.editable and not f.primary_key]


def _coin_check(coin: CoinConfig) -> None:
    coin.contract_address = (coin.contract_address or "").strip() or None
    errors = coins_selectors.coin_config_errors(coin=coin)
    if errors:
        raise ValidationError(errors)
    coin.full_clean()


@transaction.atomic(durable=True)
def coin_save(*, coin: CoinConfig, changed_fields: list[str] | None = None) -> CoinConfig:
    """
    Save a new coin, or the edit of one (from the admin), and drop the cached public coin list.

    An edit locks the coin's row and copies only changed_fields (default: every editable field)
    from coin onto the stored row, then writes only those: what another writer committed to other
    fields since the form was read is kept. A blank contract address is stored as NULL.
    :raises django.core.exceptions.ValidationError: by field; a change of the coin's id, chain,
        decimals or native flag (IDENTITY_FIELDS), a native coin with a contract, a token without
        one, a second native coin of a chain, or another constraint broken.
    """
    if coin.pk is None:
        _coin_check(coin)
        coin.save()
        saved = coin
    else:
        saved = CoinConfig.objects.select_for_update().get(pk=coin.pk)
        fields = list(changed_fields) if changed_fields is not None else _editable_fields()
        redefined = {
            name: f"A coin's {CoinConfig._meta.get_field(name).verbose_name} cannot change: create a new coin instead."
            for name in IDENTITY_FIELDS
            if name in fields and getattr(coin, name) != getattr(saved, name)
        }
        if redefined:
            raise ValidationError(redefined)
        for name in fields:
            setattr(saved, name, getattr(coin, name))
        _coin_check(saved)
        if fields:
            saved.save(update_fields=[*fields, "update_time"])
    transaction.on_commit(lambda: cache.delete(COIN_LIST_CACHE_KEY))
    return saved


@transaction.atomic(savepoint=False)
def coin_settings_apply(*, coin_id: str, expected: dict[str, object], values: dict[str, object]) -> CoinConfig:
    """
    Write values onto the coin if each of its expected fields still holds the expected value.

    A building block of an approved proposal: it joins the caller's transaction and locks the
    coin's row. Values come as a form sends them and are converted by each field.
    :raises CoinSettingsChanged: a field changed since the proposal was made (nothing is written).
    :raises django.core.exceptions.ValidationError: by field, as coin_save.
    """
    coin = CoinConfig.objects.select_for_update().get(coin_id=coin_id)
    moved = {
        name: value
        for name, value in expected.items()
        if getattr(coin, name) != CoinConfig._meta.get_field(name).to_python(value)
    }
    if moved:
        names = ", ".join(sorted(moved))
        raise CoinSettingsChanged(f"{coin_id}: {names} changed since the proposal was made.")
    redefined = [name for name in values if name in IDENTITY_FIELDS]
    if redefined:
        raise ValidationError({name: "A coin's identity cannot change." for name in redefined})
    for name, value in values.items():
        setattr(coin, name, CoinConfig._meta.get_field(name).to_python(value))
    _coin_check(coin)
    coin.save(update_fields=[*values, "update_time"])
    transaction.on_commit(lambda: cache.delete(COIN_LIST_CACHE_KEY))
    return coin


@transaction.atomic(durable=True)
def coin_set_contract(*, coin_id: str, contract_address: str) -> CoinConfig:
    """
    Point a token coin at its contract (the dev chain redeploys its test USDT on every start).

    :raises CoinConfig.DoesNotExist: no such coin.
    :raises django.core.exceptions.ValidationError: the coin is native, or the address is blank.
    """
    coin = CoinConfig.objects.select_for_update().get(coin_id=coin_id)
    coin.contract_address = contract_address
    _coin_check(coin)
    coin.save(update_fields=["contract_address", "update_time"])
    transaction.on_commit(lambda: cache.delete(COIN_LIST_CACHE_KEY))
    return coin
