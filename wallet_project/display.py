"""
How the back office writes values for people: amounts at their coin's precision, never rounded.

Templates reach this through the `coin_amount` filter (wallet_project.templatetags.backoffice),
so that one function decides how every page, list and message writes an amount.
"""

from __future__ import annotations

import decimal
from decimal import Decimal

from wallet_project.money import MONEY_PRECISION

_WIDE = decimal.Context(prec=MONEY_PRECISION)


def amount_display(value: Decimal | int | str | None) -> str:
    """
    Return an amount as a person reads it: "1,234.5", "0.00000001", "150" (no exponent, no padding).

    DECIMAL(38,18) pads every amount to 18 decimals; the money rules keep an amount within its
    coin's decimals, so stripping the padding shows it at the coin's precision. Nothing is ever
    rounded: a digit stored is a digit shown, so nobody approves a figure other than the one stored.
    """
    if value is None or value == "":
        return "—"
    amount = Decimal(value)
    if not amount.is_finite():
        return str(amount)
    if amount.is_zero():
        return "0"
    return format(amount.normalize(_WIDE), ",f")
