"""
Which hot address of the withdraw pool pays a withdrawal (seed 3.1.2), on real balances.

The balances are what the chain says, cached: on EVM and TRON the readings the beat task
hot_balances_refresh keeps (monitoring_hot_balance, refreshed every HOT_BALANCE_REFRESH_SECONDS;
a reading older than three periods counts as unknown), on BTC the UTXO set the scanner keeps.
A cached figure only ranks the addresses: the chosen one's balance is read from the node again
under the withdrawal's lock before anything is signed (the shortfall check of sign_transfer).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.utils import timezone

from addresses import selectors as addresses_selectors
from addresses import services as addresses_services
from addresses.models import WalletAddress
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from monitoring import selectors as monitoring_selectors
from utxos import selectors as utxos_selectors


def hot_balances(*, coin: CoinConfig, wallet_type: str) -> dict[int, Decimal]:
    """Return {address id: balance of coin} of the pool's hot addresses whose balance is known now."""
    rows = [
        row
        for row in addresses_selectors.hot_addresses(chain_id=coin.chain_id, wallet_type=wallet_type)
        if row.key_secret_id is not None  # watch-only rows never pay
    ]
    if utxos_selectors.tracks(chain_id=coin.chain_id):
        sats = utxos_selectors.utxo_totals_by_address()
        return {
            row.id: coins_selectors.amount_from_base_units(coin=coin, base_units=sats.get(row.id, 0)) for row in rows
        }
    fresh_after = timezone.now() - timedelta(seconds=3 * settings.HOT_BALANCE_REFRESH_SECONDS)
    by_address = {row.address: row.id for row in rows}
    return {
        by_address[reading.address]: reading.balance
        for reading in monitoring_selectors.hot_balance_list()
        if reading.coin_id == coin.coin_id
        and reading.address in by_address
        and reading.balance is not None
        and reading.read_at >= fresh_after
    }


def hot_pick(
    *, coin: CoinConfig, amount: Decimal, user_id: int, balances: dict[int, Decimal] | None = None
) -> WalletAddress:
    """
    Pick the withdraw pool's hot address for a withdrawal of amount by WITHDRAW_HOT_WALLET_STRATEGY.

    balances: the pool's hot_balances, when the caller read them already (a payout run reads them
    once: they are cached readings that only rank the addresses).

    When no address is known to hold the amount (no reading yet, or none rich enough), any usable
    address of the pool is picked the same way: the shortfall check then names the one to top up.
    :raises NoHotWallet: the pool has no usable address at all.
    """
    return hot_picks(coin=coin, wanted=[(amount, user_id)], balances=balances)[0]


def hot_picks(
    *, coin: CoinConfig, wanted: Sequence[tuple[Decimal, int]], balances: dict[int, Decimal] | None = None
) -> list[WalletAddress]:
    """hot_pick for several withdrawals ((amount, user id) each), in order, with one read of the pool."""
    wallet_type = settings.WITHDRAW_HOT_WALLET_TYPE
    strategy = settings.WITHDRAW_HOT_WALLET_STRATEGY
    regions: dict[int, str] = {}
    if strategy == "region":
        regions = {user_id: addresses_selectors.user_region(user_id=user_id) for _, user_id in wanted}
    if balances is None:
        balances = hot_balances(coin=coin, wallet_type=wallet_type)
    # Decided before the call: a NoHotWallet inside it would doom the caller's transaction.
    most = max(balances.values(), default=None)
    return addresses_services.hot_wallets_select(
        chain_id=coin.chain_id,
        wallet_type=wallet_type,
        wanted=[
            (amount if most is not None and most >= amount else Decimal(0), regions.get(user_id, ""))
            for amount, user_id in wanted
        ],
        strategy=strategy,
        balances=balances,
    )
