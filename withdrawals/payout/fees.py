"""
The fee policy of payouts, from what the node says and the settings (README "Payout fees").

EVM: EIP-1559 terms where the latest block has a base fee (max fee = base fee x
ETH_BASE_FEE_MULTIPLIER + priority fee, the node's priority fee kept within
ETH_PRIORITY_FEE_FLOOR_WEI..ETH_PRIORITY_FEE_CEILING_WEI, the max fee capped at
ETH_MAX_FEE_PER_GAS_CEILING_WEI), the node's gas price where it has none. A replacement raises
both fee fields by ETH_REPLACEMENT_BUMP_PERCENT at least. TRON: a TRC20 transfer's fee_limit is its
energy estimate x the energy price x TRON_ENERGY_MARGIN, at most TRON_FEE_LIMIT_SUN. Whatever would
need more than its ceiling is not signed: FeeCeiling says why, and the payout waits. BTC: the
node's estimatesmartfee rate (the adapter's fallback when it has none), at least
BTC_FEE_RATE_FLOOR_SAT_VB, refused above BTC_FEE_RATE_CEILING_SAT_VB; a CPFP child lifts its
package to max(that rate, the parent's x BTC_CPFP_FEE_MULTIPLIER).
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings

from chains import fees as chains_fees
from chains.evm import FeeMarket
from withdrawals.models import PayoutTx
from withdrawals.payout.common import PayoutWaits


class FeeCeiling(PayoutWaits):
    """Paying now would need a fee above the configured ceiling: nothing is signed until it falls."""

    code = "fee_ceiling"

    def __init__(self, message: str) -> None:
        super().__init__(message, alert_kind="WITHDRAW_FEE_CEILING")


_up = chains_fees.up
_priority = chains_fees.priority_fee
_ceiling_text = chains_fees.ceiling_text


def evm_terms(market: FeeMarket) -> dict[str, int]:
    """
    The fee fields of a new EVM payout (chains.fees.evm_terms, shared with sweeps and gas top-ups).

    :raises FeeCeiling: inclusion now costs more per gas than ETH_MAX_FEE_PER_GAS_CEILING_WEI.
    """
    try:
        return chains_fees.evm_terms(market)
    except chains_fees.FeeAboveCeiling as exc:
        raise FeeCeiling(exc.message) from None


def evm_bumped_terms(old: PayoutTx, market: FeeMarket) -> dict[str, int]:
    """
    The fee fields of a replacement of `old` (same nonce): both raised by ETH_REPLACEMENT_BUMP_PERCENT
    at least (nodes refuse a smaller bump), and at least what a new payout would offer now.

    :raises FeeCeiling: the bumped fee is above ETH_MAX_FEE_PER_GAS_CEILING_WEI.
    """
    bump = 1 + settings.ETH_REPLACEMENT_BUMP_PERCENT / 100
    ceiling = settings.ETH_MAX_FEE_PER_GAS_CEILING_WEI
    if old.max_fee_per_gas is None or old.max_priority_fee_per_gas is None or market.base_fee is None:
        # A legacy transaction is replaced by a legacy one: one price, raised.
        old_price = old.gas_price or old.max_fee_per_gas or 0
        price = max(_up(Decimal(old_price) * bump), market.gas_price)
        if price > ceiling:
            raise FeeCeiling(_ceiling_text("a replacement's gas price", price, ceiling))
        return {"gas_price": price}
    priority = max(_up(Decimal(old.max_priority_fee_per_gas) * bump), _priority(market))
    needed = max(_up(Decimal(old.max_fee_per_gas) * bump), market.base_fee + priority)
    if needed > ceiling:
        raise FeeCeiling(_ceiling_text("a replacement's max fee", needed, ceiling))
    wanted = _up(Decimal(market.base_fee) * settings.ETH_BASE_FEE_MULTIPLIER) + priority
    return {"max_fee_per_gas": min(max(needed, wanted), ceiling), "max_priority_fee_per_gas": priority}


def tron_fee_limit(*, energy: int | None, energy_price: int, withdraw_no: str) -> int:
    """
    The fee_limit (sun) of a TRC20 payout from its energy estimate; TRON_FEE_LIMIT_SUN when the node
    could not estimate it (the call would fail now: the token shortfall check or the chain says why).

    :raises FeeCeiling: the estimate needs more than TRON_FEE_LIMIT_SUN.
    """
    ceiling = settings.TRON_FEE_LIMIT_SUN
    if energy is None:
        return ceiling
    fee_limit = chains_fees.tron_energy_fee_limit(energy=energy, energy_price=energy_price)
    if fee_limit > ceiling:
        raise FeeCeiling(
            f"withdrawal {withdraw_no} waits unsigned: its TRC20 transfer needs {energy} energy, a fee_limit of "
            f"{fee_limit} sun with the margin, above the ceiling TRON_FEE_LIMIT_SUN of {ceiling} sun; it is paid "
            "once the energy price falls or ops raise the ceiling"
        )
    return fee_limit


def btc_fee_rate(estimate: int) -> int:
    """
    The fee rate (sat/vB) of a new BTC payout from the node's estimate: at least the floor.

    :raises FeeCeiling: the estimate is above BTC_FEE_RATE_CEILING_SAT_VB.
    """
    ceiling = settings.BTC_FEE_RATE_CEILING_SAT_VB
    if estimate > ceiling:
        raise FeeCeiling(_btc_ceiling_text("the node's fee estimate", estimate, ceiling))
    return max(estimate, settings.BTC_FEE_RATE_FLOOR_SAT_VB, 1)


def btc_cpfp_rate(*, estimate: int, parent_rate: Decimal) -> int:
    """
    The package rate (sat/vB over parent and child) a CPFP child lifts a stuck payout to.

    :raises FeeCeiling: that rate is above BTC_FEE_RATE_CEILING_SAT_VB.
    """
    wanted = max(estimate, settings.BTC_FEE_RATE_FLOOR_SAT_VB, _up(parent_rate * settings.BTC_CPFP_FEE_MULTIPLIER))
    ceiling = settings.BTC_FEE_RATE_CEILING_SAT_VB
    if wanted > ceiling:
        raise FeeCeiling(_btc_ceiling_text("a CPFP bump's package rate", wanted, ceiling))
    return wanted


def _btc_ceiling_text(what: str, rate: int, ceiling: int) -> str:
    return (
        f"{what} is {rate} sat/vB, above the ceiling BTC_FEE_RATE_CEILING_SAT_VB of {ceiling} sat/vB: nothing is "
        "signed until the network's fees fall below it, or ops raise the ceiling"
    )
