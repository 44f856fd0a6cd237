"""
What a coin's base units mean never changes once the coin exists: its id, chain, decimals and native flag.

Every stored amount (balances, flows, deposits, withdrawals) was converted from base units with
the coin's decimals. A Save in the coin admin that changed them would re-price all of it: with ETH
at 6 decimals instead of 18, a deposit of 0.000001 ETH (10**12 wei) is credited as 1,000,000 ETH.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.test import Client

from assets import services as assets_services
from assets.models import BusinessType
from coins import selectors as coins_selectors
from coins import services as coins_services
from coins.models import CoinConfig
from wallet_project.testing import admin_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1"))
    return client


@pytest.mark.parametrize(
    ("coin_id", "field", "value"),
    [
        ("ETH", "decimals", "6"),
        ("USDT-ERC20", "decimals", "18"),
        ("USDT-ERC20", "chain_id", "TRON"),
    ],
)
def test_a_superusers_save_cannot_change_what_a_coins_base_units_mean(superuser_client, user, coin_id, field, value):
    coin = CoinConfig.objects.get(coin_id=coin_id)
    assets_services.balance_credit(
        user_id=user.id, coin=coin, amount=Decimal("1"), business_type=BusinessType.RECHARGE, biz_ref="r1"
    )
    before = CoinConfig.objects.filter(pk=coin.pk).values().get()
    url = f"/admin/coins/coinconfig/{coin.pk}/change/"
    form = admin_form_data(superuser_client.get(url).content.decode())

    superuser_client.post(url, {**form, field: value, "_save": "Save"})

    stored = CoinConfig.objects.get(pk=coin.pk)
    assert CoinConfig.objects.filter(pk=coin.pk).values().get()[field] == before[field]
    # The money on the books still means what it meant: 10**12 wei is 0.000001 ETH, not 1,000,000.
    meant = Decimal(10**12).scaleb(-before["decimals"])
    assert coins_selectors.amount_from_base_units(coin=stored, base_units=10**12) == meant


@pytest.mark.parametrize(
    ("field", "value"),
    [("decimals", 6), ("chain_id", "TRON"), ("is_native", False), ("coin_id", "ETH2")],
)
def test_coin_save_refuses_to_change_a_coins_id_chain_decimals_or_native_flag(field, value):
    eth = CoinConfig.objects.get(coin_id="ETH")
    setattr(eth, field, value)
    if field == "is_native":
        eth.contract_address = "0x" + "33" * 20  # what a token needs, so that only the flip is refused

    with pytest.raises(ValidationError) as refused:
        coins_services.coin_save(coin=eth, changed_fields=[field, "contract_address"])

    assert field in refused.value.message_dict
    assert CoinConfig.objects.filter(coin_id="ETH", decimals=18, chain_id="ETH", is_native=True).exists()


def test_a_new_coin_is_still_added_with_its_chain_decimals_and_contract(superuser_client):
    url = "/admin/coins/coinconfig/add/"
    form = admin_form_data(superuser_client.get(url).content.decode())
    form.update(
        coin_id="USDC-ERC20", coin_name="USD Coin", coin_symbol="USDC", chain_id="ETH", chain_name="Ethereum",
        contract_address="0x" + "a0" * 20, decimals="6", min_recharge_amount="1", min_withdraw_amount="10",
    )  # fmt: skip

    response = superuser_client.post(url, {**form, "_save": "Save"})

    assert response.status_code == 302
    coin = CoinConfig.objects.get(coin_id="USDC-ERC20")
    assert (coin.chain_id, coin.decimals, coin.is_native) == ("ETH", 6, False)
