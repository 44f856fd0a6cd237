"""One adapter per chain family, configured from settings (node URLs, timeouts, fee fallbacks)."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from chains.base import ChainAdapter
from chains.btc import BtcAdapter
from chains.evm import EvmAdapter
from chains.tron import TronAdapter

CHAIN_IDS = ("BTC", "ETH", "TRON")


class UnknownChain(LookupError):
    """No adapter for this chain_id."""


@cache
def adapter_for(chain_id: str) -> ChainAdapter:
    """The adapter of a coin_config.chain_id ("BTC", "ETH" or "TRON"), built once per process.

    :raises UnknownChain: any other chain_id.
    """
    timeouts = {"connect_timeout": settings.CHAIN_CONNECT_TIMEOUT, "read_timeout": settings.CHAIN_READ_TIMEOUT}
    if chain_id == "ETH":
        return EvmAdapter(
            url=settings.ETH_RPC_URL,
            gas_price_fallback_wei=settings.ETH_GAS_PRICE_FALLBACK_WEI,
            trace_internal=settings.ETH_TRACE_INTERNAL_TRANSFERS,
            **timeouts,
        )
    if chain_id == "BTC":
        return BtcAdapter(
            url=settings.BTC_RPC_URL,
            network=settings.BTC_NETWORK,
            fee_fallback_sat_vb=settings.BTC_FEE_FALLBACK_SAT_VB,
            **timeouts,
        )
    if chain_id == "TRON":
        return TronAdapter(
            url=settings.TRON_API_URL,
            fee_fallback_sun=settings.TRON_FEE_FALLBACK_SUN,
            fee_limit_sun=settings.TRON_FEE_LIMIT_SUN,
            **timeouts,
        )
    raise UnknownChain(f"no chain adapter for {chain_id!r}")


def adapters_reset() -> None:
    """Forget the built adapters (after settings changed, e.g. in tests)."""
    adapter_for.cache_clear()
