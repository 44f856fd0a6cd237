"""Writes of coin_config."""

from __future__ import annotations

from django.core.cache import cache
from django.db import transaction

from coins.models import CoinConfig

COIN_LIST_CACHE_KEY = "coins:list:v1"


@transaction.atomic(durable=True)
def coin_save(*, coin: CoinConfig, changed_fields: list[str] | None = None) -> CoinConfig:
    """
    Save an edited coin (from the admin) and drop the cached public coin list.

    :raises django.core.exceptions.ValidationError: a database constraint would be broken.
    """
    coin.full_clean()
    if coin.pk is None or not changed_fields:
        coin.save()
    else:
        coin.save(update_fields=[*changed_fields, "update_time"])
    transaction.on_commit(lambda: cache.delete(COIN_LIST_CACHE_KEY))
    return coin


@transaction.atomic(durable=True)
def coin_set_contract(*, coin_id: str, contract_address: str) -> CoinConfig:
    """
    Point a token coin at its contract (the dev chain redeploys its test USDT on every start).

    :raises CoinConfig.DoesNotExist: no such coin.
    """
    coin = CoinConfig.objects.select_for_update().get(coin_id=coin_id)
    coin.contract_address = contract_address
    coin.save(update_fields=["contract_address", "update_time"])
    transaction.on_commit(lambda: cache.delete(COIN_LIST_CACHE_KEY))
    return coin
