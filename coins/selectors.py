"""Reads of coin_config and the amount rules every money path applies."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db.models import QuerySet

from coins.models import CoinConfig, Switch
from wallet_project.errors import NotFound, WalletError
from wallet_project.money import exact

# DECIMAL(38,18): 20 integer digits. Anything at or above this cannot be stored.
AMOUNT_CEILING = Decimal(10) ** 20


class InvalidAmount(WalletError):
    code = "invalid_amount"


class CoinDisabled(WalletError):
    code = "coin_disabled"


def coin_list(*, enabled_only: bool = True) -> QuerySet[CoinConfig]:
    """Return coins in display order."""
    coins = CoinConfig.objects.all()
    if enabled_only:
        coins = coins.filter(status=Switch.ENABLED)
    return coins.order_by("sort_order", "id")


def coin_get(*, coin_id: str) -> CoinConfig:
    """
    Return the coin with this id.

    :raises NotFound: no such coin.
    """
    try:
        return CoinConfig.objects.get(coin_id=coin_id)
    except CoinConfig.DoesNotExist:
        raise NotFound(f"Unknown coin {coin_id!r}.", field="coin") from None


def coin_get_enabled(*, coin_id: str) -> CoinConfig:
    """
    Return the coin with this id if it is enabled.

    :raises NotFound: no such coin.
    :raises CoinDisabled: the coin is switched off.
    """
    coin = coin_get(coin_id=coin_id)
    if not coin.is_enabled:
        raise CoinDisabled(f"Coin {coin_id} is disabled.", field="coin")
    return coin


def amount_parse(*, value: object, field: str = "amount") -> Decimal:
    """
    Return value as a finite Decimal; refuse floats, booleans and anything non-numeric.

    Floats are refused rather than converted: 0.1 as a float is not 0.1.
    :raises InvalidAmount: value is not a decimal number.
    """
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            amount = Decimal(str(value).strip())
        except InvalidOperation:
            raise InvalidAmount(f"{value!r} is not a number.", field=field) from None
    else:
        raise InvalidAmount(f"An amount must be a decimal string, not {type(value).__name__}.", field=field)
    if not amount.is_finite():
        raise InvalidAmount("An amount must be a finite number.", field=field)
    return amount


def amount_check(*, coin: CoinConfig, amount: object, field: str = "amount") -> Decimal:
    """
    Return amount as a Decimal if it is positive, storable and no finer than the coin's precision.

    Never rounds: an amount with more decimals than the coin has is refused.
    :raises InvalidAmount: otherwise.
    """
    value = amount_parse(value=amount, field=field)
    if value <= 0:
        raise InvalidAmount("An amount must be greater than zero.", field=field)
    if value >= AMOUNT_CEILING:
        raise InvalidAmount("The amount is too large.", field=field)
    with exact():
        too_fine = value % coin.quantum != 0
    if too_fine:
        raise InvalidAmount(f"{coin.coin_id} allows at most {coin.decimals} decimal places.", field=field)
    return value


def amount_to_base_units(*, coin: CoinConfig, amount: Decimal) -> int:
    """Return amount in the chain's integer unit (satoshi, wei, sun)."""
    checked = amount_check(coin=coin, amount=amount)
    with exact():
        return int(checked.scaleb(coin.decimals))


def amount_from_base_units(*, coin: CoinConfig, base_units: int) -> Decimal:
    """Return an on-chain integer amount as a Decimal of the coin."""
    with exact():
        return Decimal(base_units).scaleb(-coin.decimals)
