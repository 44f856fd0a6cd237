"""
Decimal arithmetic for money.

Python's default Decimal context keeps 28 significant digits, fewer than DECIMAL(38,18) holds,
and it rounds silently. Money arithmetic runs in `exact()`, which has room for 38 digits and
raises instead of rounding.
"""

from __future__ import annotations

import decimal
from contextlib import AbstractContextManager

MONEY_PRECISION = 60

_EXACT = decimal.Context(
    prec=MONEY_PRECISION,
    rounding=decimal.ROUND_HALF_EVEN,
    traps=[decimal.InvalidOperation, decimal.Inexact, decimal.Overflow, decimal.DivisionByZero],
)


def exact() -> AbstractContextManager[decimal.Context]:
    """Return a context in which any rounding of a money value raises decimal.Inexact."""
    return decimal.localcontext(_EXACT)


def widen_default_context() -> None:
    """Give every thread's default context enough digits for DECIMAL(38,18) values."""
    decimal.DefaultContext.prec = MONEY_PRECISION
    decimal.getcontext().prec = MONEY_PRECISION


def round_up(value: decimal.Decimal, quantum: decimal.Decimal) -> decimal.Decimal:
    """Round value up (away from zero) to a multiple of quantum: the one deliberate rounding (fees)."""
    return value.quantize(quantum, rounding=decimal.ROUND_UP, context=decimal.Context(prec=MONEY_PRECISION))


def decimal_plain(value: decimal.Decimal) -> str:
    """Return value in plain notation without trailing zeros: 0.010000 -> "0.01", 1E+2 -> "100", 0E-18 -> "0"."""
    if value.is_zero():
        return "0"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
