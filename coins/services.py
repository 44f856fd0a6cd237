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
