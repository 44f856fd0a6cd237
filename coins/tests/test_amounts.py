"""The one amount parser: plain decimal strings only, kept exactly; and the one amount formatter."""

from __future__ import annotations

import string
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coins import selectors as coins_selectors
from coins.models import CoinConfig
from wallet_project.money import exact

ETH = CoinConfig(coin_id="ETH", decimals=18)
BTC = CoinConfig(coin_id="BTC", decimals=8)
USDT = CoinConfig(coin_id="USDT-TRC20", decimals=6)
COINS = [ETH, BTC, USDT]


class TestAmountParse:
    @pytest.mark.parametrize(
        "text",
        [
            "1e2", "1E2", "1e-2", "1.5e1", "1e+2", "0e0",  # exponent forms
            "+1", "+0.5",  # a sign
            " 1", "1 ", "\t1", "1\n", "\u00a01",  # surrounding whitespace
            "-0", "-0.0", "-1",  # negative zero and negatives
            ".5", "5.",  # a point without a digit on one side
            "01", "00.5",  # leading zeros
            "1,5", "1_000", "0x10", "\u0661\u0662",  # separators, hex, non-ASCII digits
            "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf",  # not finite
            "", "abc", "1.2.3", "1..2",
        ],
    )  # fmt: skip
    def test_refuses_anything_but_a_plain_decimal_string(self, text):
        with pytest.raises(coins_selectors.InvalidAmount) as refused:
            coins_selectors.amount_check(coin=ETH, amount=text)

        assert refused.value.field == "amount"
        assert refused.value.code == "invalid_amount"

    @pytest.mark.parametrize("value", [1.5, 100.0, 100, 0, True, None, ["1"], {"amount": "1"}])
    def test_refuses_json_numbers_and_other_types(self, value):
        with pytest.raises(coins_selectors.InvalidAmount) as refused:
            coins_selectors.amount_check(coin=ETH, amount=value)

        assert refused.value.field == "amount"

    @pytest.mark.parametrize(
        ("text", "expected"),
        [("1", Decimal(1)), ("0.5", Decimal("0.5")), ("100", Decimal(100)), ("1.50", Decimal("1.50"))],
    )
    def test_accepts_plain_decimal_strings_exactly(self, text, expected):
        assert coins_selectors.amount_check(coin=ETH, amount=text) == expected

    def test_accepts_trailing_zeros_beyond_the_coins_precision_that_change_nothing(self):
        assert coins_selectors.amount_check(coin=BTC, amount="0.1000000000") == Decimal("0.1")

    def test_still_takes_decimals_from_the_services_own_arithmetic(self):
        assert coins_selectors.amount_check(coin=ETH, amount=Decimal("1E+2")) == Decimal(100)


# Strings made of the characters an amount could be typed with; most are not amounts.
TYPED = st.text(alphabet=string.digits + ".eE+- \t", max_size=24)
PLAIN = st.from_regex(r"\A(0|[1-9][0-9]{0,19})(\.[0-9]{1,18})?\Z")


class TestAmountParseProperties:
    @settings(max_examples=500, deadline=None)
    @given(text=st.one_of(TYPED, PLAIN), coin=st.sampled_from(COINS))
    def test_every_accepted_string_round_trips_exactly_at_the_coins_precision(self, text, coin):
        try:
            value = coins_selectors.amount_check(coin=coin, amount=text)
        except coins_selectors.InvalidAmount:
            return

        assert format(value, "f") == text  # the digits the client sent, kept
        with exact():  # raises Inexact if a digit would be lost at the coin's precision
            at_precision = value.quantize(coin.quantum)
        assert at_precision == value
        assert Decimal(str(at_precision)) == value
        assert coins_selectors.amount_check(coin=coin, amount=format(at_precision, "f")) == value
        assert "e" not in text.lower() and text.strip() == text and not text.startswith(("+", "-", "."))

    @settings(max_examples=300, deadline=None)
    @given(
        value=st.decimals(min_value=Decimal("1e-6"), max_value=Decimal("1e19"), allow_nan=False, places=6),
        style=st.sampled_from(["e", "E", ".3e", ".10E"]),
    )
    def test_no_exponent_form_is_ever_accepted(self, value, style):
        text = format(value, style)

        with pytest.raises(coins_selectors.InvalidAmount):
            coins_selectors.amount_check(coin=USDT, amount=text)


class TestAmountFormat:
    @pytest.mark.parametrize(
        ("coin", "amount", "text"),
        [
            (ETH, Decimal("0.010000000000000000"), "0.01 ETH"),
            (ETH, Decimal("100.000000000000000000"), "100 ETH"),
            (ETH, Decimal("1E+2"), "100 ETH"),
            (BTC, Decimal("0.00000001"), "0.00000001 BTC"),
            (BTC, Decimal("0E-18"), "0 BTC"),
            (USDT, Decimal("-2.500000"), "-2.5 USDT-TRC20"),
            (USDT, Decimal("1000000"), "1000000 USDT-TRC20"),
            # finer than the coin (a misconfigured limit): shown exactly, never rounded
            (BTC, Decimal("0.000000001"), "0.000000001 BTC"),
        ],
    )
    def test_prints_the_amount_without_trailing_zeros_or_exponent(self, coin, amount, text):
        assert coins_selectors.amount_format(coin=coin, amount=amount) == text
