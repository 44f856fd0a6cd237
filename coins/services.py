"""Writes of coin_config."""

from __future__ import annotations

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction

from coins import selectors as coins_selectors
from coins.models import CoinConfig

COIN_LIST_CACHE_KEY = "coins:list:v1"


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
    :raises django.core.exceptions.ValidationError: by field; a native coin with a contract, a
        token without one, a second native coin of a chain, or another constraint broken.
    """
    if coin.pk is None:
        _coin_check(coin)
        coin.save()
        saved = coin
    else:
        saved = CoinConfig.objects.select_for_update().get(pk=coin.pk)
        fields = list(changed_fields) if changed_fields is not None else _editable_fields()
        for name in fields:
            setattr(saved, name, getattr(coin, name))
        _coin_check(saved)
        if fields:
            saved.save(update_fields=[*fields, "update_time"])
    transaction.on_commit(lambda: cache.delete(COIN_LIST_CACHE_KEY))
    return saved


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
