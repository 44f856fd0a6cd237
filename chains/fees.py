"""
The EVM fee policy every sender of the exchange uses (payouts, sweeps, gas top-ups), from what the
node says and the settings (README "Payout fees").

EIP-1559 terms where the latest block has a base fee: max fee = base fee x ETH_BASE_FEE_MULTIPLIER +
priority fee, the node's priority fee kept within ETH_PRIORITY_FEE_FLOOR_WEI..ETH_PRIORITY_FEE_CEILING_WEI,
the max fee capped at ETH_MAX_FEE_PER_GAS_CEILING_WEI; the node's gas price where it has none.
Whatever would need more than the ceiling is not signed: FeeAboveCeiling says why.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

from django.conf import settings

from chains.evm import FeeMarket


class FeeAboveCeiling(Exception):
    """Inclusion now costs more per gas than ETH_MAX_FEE_PER_GAS_CEILING_WEI; the message says how much."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def up(value: Decimal) -> int:
    """value rounded up to a whole number."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def gwei(wei: int) -> str:
    return f"{(Decimal(wei) / 10**9).normalize():f} gwei"


def priority_fee(market: FeeMarket) -> int:
    """The node's suggested priority fee, kept within the configured floor and ceiling."""
    floor, ceiling = settings.ETH_PRIORITY_FEE_FLOOR_WEI, settings.ETH_PRIORITY_FEE_CEILING_WEI
    return min(max(market.priority_fee, floor), ceiling)


def ceiling_text(what: str, wei: int, ceiling: int) -> str:
    return (
        f"{what} is {gwei(wei)} per gas, above the ceiling ETH_MAX_FEE_PER_GAS_CEILING_WEI of {gwei(ceiling)}: "
        "nothing is signed until the network's fees fall below it, or ops raise the ceiling"
    )


def evm_terms(market: FeeMarket) -> dict[str, int]:
    """
    The fee fields of a new EVM transaction: max_fee_per_gas and max_priority_fee_per_gas, or gas_price.

    :raises FeeAboveCeiling: inclusion now (base fee + priority fee, or the gas price) costs more per
        gas than ETH_MAX_FEE_PER_GAS_CEILING_WEI.
    """
    ceiling = settings.ETH_MAX_FEE_PER_GAS_CEILING_WEI
    if market.base_fee is None:
        if market.gas_price > ceiling:
            raise FeeAboveCeiling(ceiling_text("the node's gas price", market.gas_price, ceiling))
        return {"gas_price": market.gas_price}
    priority = priority_fee(market)
    needed = market.base_fee + priority
    if needed > ceiling:
        raise FeeAboveCeiling(ceiling_text("base fee + priority fee", needed, ceiling))
    wanted = up(Decimal(market.base_fee) * settings.ETH_BASE_FEE_MULTIPLIER) + priority
    return {"max_fee_per_gas": min(wanted, ceiling), "max_priority_fee_per_gas": priority}


def per_gas(terms: dict[str, int]) -> int:
    """The most a transaction with these fee fields pays per gas (what its sender must hold for)."""
    return terms.get("max_fee_per_gas") or terms["gas_price"]


def tron_energy_fee_limit(*, energy: int, energy_price: int) -> int:
    """The fee_limit (sun) a TRC20 call of `energy` needs: energy x price x TRON_ENERGY_MARGIN (at least one
    energy's price)."""
    return max(up(Decimal(energy * energy_price) * settings.TRON_ENERGY_MARGIN), energy_price)
