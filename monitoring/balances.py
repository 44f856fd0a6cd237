"""
Hot wallets' balances read from their chains (the ledger tracks users' money, not what each hot
address holds on chain): a beat task asks each chain's node for every hot address's balance of
every coin of that chain and keeps the answer in monitoring_hot_balance, for the hot balance
alerts and /metrics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from addresses import selectors as addresses_selectors
from chains import registry as chains_registry
from chains.base import ChainAdapter, ChainError
from coins import selectors as coins_selectors
from monitoring.models import HotBalance

logger = logging.getLogger(__name__)

NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError, TypeError, KeyError)


@dataclass(frozen=True)
class RefreshResult:
    read: int = 0
    failed: int = 0


@transaction.atomic(durable=True)
def _reading_store(*, chain_id: str, address: str, coin_id: str, balance: object, error: str, now: datetime) -> None:
    HotBalance.objects.update_or_create(
        address=address,
        coin_id=coin_id,
        defaults={"chain_id": chain_id, "balance": balance, "error": error[:300], "read_at": now},
    )


def hot_balances_refresh(
    *, now: datetime | None = None, adapters: dict[str, ChainAdapter] | None = None
) -> RefreshResult:
    """
    Read every hot address's on-chain balance of each coin of its chain (HOT_BALANCE_CHAINS).

    One node call per address and coin, outside any transaction; each answer is stored in a
    short transaction of its own. A failed read keeps no number (NULL with the error's type), so
    the checks treat that balance as unknown rather than zero.
    """
    moment = now or timezone.now()
    read = failed = 0
    for chain_id in settings.HOT_BALANCE_CHAINS:
        hot = list(addresses_selectors.hot_addresses(chain_id=chain_id))
        if not hot:
            continue
        try:
            adapter = (adapters or {}).get(chain_id) or chains_registry.adapter_for(chain_id)
        except (LookupError, ImproperlyConfigured, *NODE_ERRORS) as exc:
            logger.warning("hot balances of %s not read: no adapter (%s)", chain_id, type(exc).__name__)
            continue
        native = coins_selectors.chain_native_coin_id(chain_id=chain_id)
        coins = [
            coin
            for coin in coins_selectors.coin_list(enabled_only=False).filter(chain_id=chain_id)
            if coin.coin_id == native or coin.contract_address  # a token without its contract cannot be read
        ]
        for row in hot:
            for coin in coins:
                contract = None if coin.coin_id == native else coin.contract_address
                try:
                    units = adapter.balance(row.address, contract=contract)
                    balance, error = coins_selectors.amount_from_base_units(coin=coin, base_units=units), ""
                    read += 1
                except NODE_ERRORS as exc:
                    balance, error = None, f"{type(exc).__name__}: {str(exc)[:200]}"
                    failed += 1
                    logger.warning("hot balance of %s %s not read: %s", coin.coin_id, row.address, error)
                _reading_store(
                    chain_id=chain_id,
                    address=row.address,
                    coin_id=coin.coin_id,
                    balance=balance,
                    error=error,
                    now=moment,
                )
    return RefreshResult(read=read, failed=failed)
