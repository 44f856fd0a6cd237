"""Test support: the seed coins, loaded again after a transactional test flushed every table."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator

from django.apps import apps
from django.db import connection

from coins.models import CoinConfig

# The native coins of the seed data (coins.migrations.0004_native_coin marks the same ones).
SEED_NATIVE_COINS = ("BTC", "ETH", "TRX")


def coins_seed() -> None:
    """Load the five coins of the seed data migration, each with its native flag."""
    seed = importlib.import_module("coins.migrations.0002_seed_coins")
    for coin_id, name, symbol, chain_id, chain_name, contract, *_ in seed.COINS:
        # The flag first: the seed predates it, and the database refuses a coin that is neither
        # native nor has a contract. The seed then fills in every other field.
        CoinConfig.objects.get_or_create(
            coin_id=coin_id,
            defaults={
                "coin_name": name,
                "coin_symbol": symbol,
                "chain_id": chain_id,
                "chain_name": chain_name,
                "contract_address": contract,
                "is_native": coin_id in SEED_NATIVE_COINS,
            },
        )
    seed.load_coins(apps, None)
    importlib.import_module("coins.migrations.0006_risk_rule_thresholds").load_thresholds(apps, None)
    importlib.import_module("coins.migrations.0007_sweep_threshold").load_sweep_thresholds(apps, None)


@contextlib.contextmanager
def check_constraints_off() -> Iterator[None]:
    """Write rows as they could exist from before a CHECK constraint (legacy data, a manual SQL fix)."""
    off, on = (
        ("SET SESSION check_constraint_checks = 0", "SET SESSION check_constraint_checks = 1")
        if connection.vendor == "mysql"
        else ("PRAGMA ignore_check_constraints = 1", "PRAGMA ignore_check_constraints = 0")
    )
    with connection.cursor() as cursor:
        cursor.execute(off)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(on)
