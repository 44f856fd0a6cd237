"""Reads of coin_config and the amount rules every money path applies."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
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


class CoinMisconfigured(WalletError):
    """A chain's coins do not say unambiguously which coin a transfer is: its deposits are not scanned."""

    code = "coin_misconfigured"


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


# --- which coin a transfer is ------------------------------------------------------------------------
# One rule for the scanner, the payout and address derivation: a coin is its chain's native coin
# only if it is configured so (is_native); a coin that is not native is a token with a contract.
# Nothing is ever inferred from a missing contract address.


def coin_is_native(*, coin: CoinConfig) -> bool:
    """Whether coin is its chain's own coin, moved by plain transfers rather than by a contract."""
    return coin.is_native


def chain_native_coin(*, chain_id: str) -> CoinConfig:
    """
    Return the native coin of chain_id (BTC, ETH, TRX): the coin its addresses' rows carry.

    :raises CoinMisconfigured: no coin of the chain is configured as its native coin.
    """
    native = CoinConfig.objects.filter(chain_id=chain_id, is_native=True).order_by("id").first()
    if native is None:
        raise CoinMisconfigured(f"Chain {chain_id} has no native coin configured.", field="chain_id")
    return native


def chain_native_coin_id(*, chain_id: str) -> str | None:
    """Return the coin_id of chain_id's native coin, or None when none is configured (reports, checks)."""
    return (
        CoinConfig.objects.filter(chain_id=chain_id, is_native=True)
        .order_by("id")
        .values_list("coin_id", flat=True)
        .first()
    )


def coin_config_errors(*, coin: CoinConfig) -> dict[str, str]:
    """
    Return what is wrong with coin's native flag and contract, by field (empty when it is right).

    Checked before a coin is saved, so that the admin shows a field error where the database
    would only refuse the row.
    """
    errors: dict[str, str] = {}
    contract = (coin.contract_address or "").strip()
    if coin_is_native(coin=coin):
        if contract:
            errors["contract_address"] = "A native coin has no contract address: clear it, or untick 'is native'."
        elif CoinConfig.objects.filter(chain_id=coin.chain_id, is_native=True).exclude(pk=coin.pk).exists():
            errors["is_native"] = f"Chain {coin.chain_id} already has a native coin."
    elif not contract:
        errors["contract_address"] = (
            "A token needs its contract address; without one its deposits would be taken for the native coin."
        )
    return errors


@dataclass(frozen=True)
class ChainCoins:
    """A chain's coins, unambiguous: its native coin and its tokens by canonical contract key."""

    chain_id: str
    native: CoinConfig
    tokens: dict[str, CoinConfig] = field(default_factory=dict)
    coins: tuple[CoinConfig, ...] = ()


def chain_coins(*, chain_id: str, contract_key: Callable[[str], str]) -> ChainCoins:
    """
    Return the chain's coins (enabled or not) if they say which coin every transfer is.

    contract_key turns a contract address into the key transfers carry (the chain adapter's
    match_key); it raises ValueError or TypeError for an invalid address.
    :raises CoinMisconfigured: see chain_coins_check.
    """
    coins = CoinConfig.objects.filter(chain_id=chain_id).order_by("sort_order", "id")
    return chain_coins_check(chain_id=chain_id, coins=coins, contract_key=contract_key)


def chain_coins_check(*, chain_id: str, coins: Iterable[CoinConfig], contract_key: Callable[[str], str]) -> ChainCoins:
    """
    Return coins as a ChainCoins, or refuse them if any transfer could be taken for the wrong coin.

    :raises CoinMisconfigured: no native coin or more than one, a native coin with a contract, a
        token without a valid contract, or two tokens with the same contract. The message lists
        every problem.
    """
    coins = tuple(coins)
    problems: list[str] = []
    natives = [coin for coin in coins if coin_is_native(coin=coin)]
    if not natives:
        problems.append("no native coin")
    elif len(natives) > 1:
        problems.append(f"{len(natives)} native coins ({', '.join(c.coin_id for c in natives)})")
    tokens: dict[str, CoinConfig] = {}
    for coin in coins:
        if coin_is_native(coin=coin):
            if coin.contract_address:
                problems.append(f"native coin {coin.coin_id} has a contract address")
            continue
        if not coin.contract_address:
            problems.append(f"token {coin.coin_id} has no contract address")
            continue
        try:
            key = contract_key(coin.contract_address)
        except (ValueError, TypeError):
            problems.append(f"the contract address of {coin.coin_id} is not a valid {chain_id} address")
            continue
        if key in tokens:
            problems.append(f"tokens {tokens[key].coin_id} and {coin.coin_id} have the same contract")
            continue
        tokens[key] = coin
    if problems:
        raise CoinMisconfigured(
            f"The coins of chain {chain_id} are ambiguous: {'; '.join(problems)}.", field="chain_id"
        )
    return ChainCoins(chain_id=chain_id, native=natives[0], tokens=tokens, coins=coins)
