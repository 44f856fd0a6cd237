"""Reads of coin_config and the amount rules every money path applies."""

from __future__ import annotations

import re
from decimal import Decimal

from django.db.models import QuerySet

from coins.models import CoinConfig, Switch
from wallet_project import money
from wallet_project.errors import WalletError
from wallet_project.money import exact

# DECIMAL(38,18): 20 integer digits. Anything at or above this cannot be stored.
AMOUNT_CEILING = Decimal(10) ** 20
# A plain decimal: no sign, exponent, whitespace or leading zero; a point needs digits on both
# sides. [0-9], not \d, which matches any Unicode digit. The integer part is bounded here so that
# an endless string of digits is refused before Decimal reads it (the ceiling check then refines).
_PLAIN_DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,20})(?:\.[0-9]{1,30})?", re.ASCII)


class InvalidAmount(WalletError):
    code = "invalid_amount"


class UnknownCoin(WalletError):
    """No coin has this id: a bad request (400 on the coin field), not a missing page."""

    code = "unknown_coin"


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

    :raises UnknownCoin: no such coin.
    """
    try:
        return CoinConfig.objects.get(coin_id=coin_id)
    except CoinConfig.DoesNotExist:
        raise UnknownCoin(f"Unknown coin {coin_id[:40]!r}.", field="coin") from None


def coin_get_enabled(*, coin_id: str) -> CoinConfig:
    """
    Return the coin with this id if it is enabled.

    :raises UnknownCoin: no such coin.
    :raises CoinDisabled: the coin is switched off.
    """
    coin = coin_get(coin_id=coin_id)
    if not coin.is_enabled:
        raise CoinDisabled(f"Coin {coin.coin_id} is disabled.", field="coin")
    return coin


def amount_parse(*, value: object, field: str = "amount") -> Decimal:
    """
    Return value as a Decimal, exactly as written; refuse anything that is not a plain decimal string.

    A plain decimal string is ASCII digits with at most one point that has digits on both sides:
    "0.5", "100", "1.50". Refused, so that what the user typed is what is booked: exponents
    ("1e2" would be 100), signs ("+1", "-0"), surrounding whitespace, a bare point (".5", "5."),
    leading zeros ("01"), separators and non-ASCII digits (which Decimal would accept), NaN and
    Infinity. JSON numbers are refused too: a float is not the amount typed (0.1 is not 0.1),
    and an integer would make "send a string" a rule with exceptions. A Decimal passes as it
    is: it comes from the services' own arithmetic, never from a client.
    :raises InvalidAmount: value is not a plain decimal string (or a finite Decimal).
    """
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise InvalidAmount("An amount must be a finite number.", field=field)
        return value
    if not isinstance(value, str):
        raise InvalidAmount(
            f'Send the amount as a decimal string such as "0.5", not as a JSON {_json_type(value)}.', field=field
        )
    if not _PLAIN_DECIMAL.fullmatch(value):
        raise InvalidAmount(
            f'{value[:40]!r} is not a plain decimal amount: write digits with at most one point, such as "0.5" '
            "(no sign, exponent, spaces or separators).",
            field=field,
        )
    return Decimal(value)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


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


def amount_format(*, coin: CoinConfig, amount: Decimal) -> str:
    """
    Return amount and the coin for a person to read: "0.01 ETH", never "0.010000000000000000 ETH".

    Every message that shows an amount uses this. Trailing zeros are dropped and no exponent is
    printed; an amount finer than the coin's precision (a misconfigured limit) is shown exactly
    rather than rounded, so a message never states a figure that is not the one applied.
    """
    return f"{money.decimal_plain(amount)} {coin.coin_id}"


def amount_to_base_units(*, coin: CoinConfig, amount: Decimal) -> int:
    """Return amount in the chain's integer unit (satoshi, wei, sun)."""
    checked = amount_check(coin=coin, amount=amount)
    with exact():
        return int(checked.scaleb(coin.decimals))


def amount_from_base_units(*, coin: CoinConfig, base_units: int) -> Decimal:
    """Return an on-chain integer amount as a Decimal of the coin."""
    with exact():
        return Decimal(base_units).scaleb(-coin.decimals)
