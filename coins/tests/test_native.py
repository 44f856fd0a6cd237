"""A chain's native coin is configured explicitly; a token without a contract cannot be stored."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from coins import selectors as coins_selectors
from coins import services as coins_services
from coins.models import CoinConfig

pytestmark = pytest.mark.django_db


def _key(address: str) -> str:
    if not address.startswith("0x") or len(address) != 42:
        raise ValueError("not an address")
    return address.lower()


def _coin(coin_id: str, *, native: bool = False, contract: str | None = None) -> CoinConfig:
    return CoinConfig(coin_id=coin_id, chain_id="ETH", is_native=native, contract_address=contract)


class TestSeededCoins:
    def test_btc_eth_and_trx_are_their_chains_native_coins(self):
        natives = {chain: coins_selectors.chain_native_coin(chain_id=chain).coin_id for chain in ("BTC", "ETH", "TRON")}

        assert natives == {"BTC": "BTC", "ETH": "ETH", "TRON": "TRX"}
        assert set(CoinConfig.objects.filter(is_native=False).values_list("coin_id", flat=True)) == {
            "USDT-ERC20",
            "USDT-TRC20",
        }

    def test_a_chain_without_a_native_coin_is_refused_by_the_selector(self):
        with pytest.raises(coins_selectors.CoinMisconfigured):
            coins_selectors.chain_native_coin(chain_id="DOGE")


class TestCoinSave:
    def test_refuses_a_token_without_its_contract_with_a_field_error_and_writes_nothing(self):
        usdt = CoinConfig.objects.get(coin_id="USDT-ERC20")
        stored = usdt.contract_address
        usdt.contract_address = "  "

        with pytest.raises(ValidationError) as refused:
            coins_services.coin_save(coin=usdt, changed_fields=["contract_address"])

        assert "contract_address" in refused.value.message_dict
        assert CoinConfig.objects.get(coin_id="USDT-ERC20").contract_address == stored

    def test_refuses_a_native_coin_with_a_contract(self):
        eth = CoinConfig.objects.get(coin_id="ETH")
        eth.contract_address = "0x" + "11" * 20

        with pytest.raises(ValidationError) as refused:
            coins_services.coin_save(coin=eth, changed_fields=["contract_address"])

        assert "contract_address" in refused.value.message_dict

    def test_refuses_a_second_native_coin_on_a_chain(self):
        usdt = CoinConfig.objects.get(coin_id="USDT-ERC20")
        usdt.is_native, usdt.contract_address = True, None

        with pytest.raises(ValidationError) as refused:
            coins_services.coin_save(coin=usdt, changed_fields=["is_native", "contract_address"])

        assert "is_native" in refused.value.message_dict
        assert coins_selectors.chain_native_coin(chain_id="ETH").coin_id == "ETH"

    def test_writes_only_the_changed_fields_over_the_locked_row(self):
        # The admin's form copy was read before another writer changed the contract.
        stale = CoinConfig.objects.get(coin_id="USDT-ERC20")
        coins_services.coin_set_contract(coin_id="USDT-ERC20", contract_address="0x" + "22" * 20)
        stale.min_withdraw_amount = Decimal("12")

        saved = coins_services.coin_save(coin=stale, changed_fields=["min_withdraw_amount"])

        stored = CoinConfig.objects.get(coin_id="USDT-ERC20")
        assert (stored.min_withdraw_amount, stored.contract_address) == (Decimal("12"), "0x" + "22" * 20)
        assert saved.contract_address == stored.contract_address

    def test_stores_a_blank_contract_of_a_new_native_coin_as_null(self):
        coin = CoinConfig(coin_id="LTC", coin_name="Litecoin", coin_symbol="LTC", chain_id="LTC", chain_name="Litecoin")
        coin.is_native, coin.contract_address = True, ""

        coins_services.coin_save(coin=coin)

        assert CoinConfig.objects.get(coin_id="LTC").contract_address is None


class TestDatabase:
    def test_refuses_a_token_row_without_a_contract(self):
        with pytest.raises(IntegrityError), transaction.atomic():
            CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address="")

    def test_refuses_a_native_row_with_a_contract(self):
        with pytest.raises(IntegrityError), transaction.atomic():
            CoinConfig.objects.filter(coin_id="ETH").update(contract_address="0x" + "11" * 20)

    def test_refuses_a_second_native_coin_of_a_chain(self):
        with pytest.raises(IntegrityError), transaction.atomic():
            CoinConfig.objects.create(coin_id="ETH2", coin_name="x", coin_symbol="x", chain_id="ETH", is_native=True)

    def test_follows_a_native_coin_moved_to_another_chain(self):
        CoinConfig.objects.filter(coin_id="ETH").update(chain_id="ETH-OLD")

        CoinConfig.objects.create(coin_id="ETH2", coin_name="x", coin_symbol="x", chain_id="ETH", is_native=True)

        assert coins_selectors.chain_native_coin(chain_id="ETH").coin_id == "ETH2"


class TestChainCoinsCheck:
    @pytest.mark.parametrize(
        ("coins", "problem"),
        [
            ([_coin("USDT", contract="0x" + "11" * 20)], "no native coin"),
            ([_coin("ETH", native=True), _coin("ETH2", native=True)], "2 native coins (ETH, ETH2)"),
            ([_coin("ETH", native=True, contract="0x" + "11" * 20)], "native coin ETH has a contract"),
            ([_coin("ETH", native=True), _coin("USDT")], "token USDT has no contract address"),
            ([_coin("ETH", native=True), _coin("USDT", contract="0xbad")], "USDT is not a valid ETH address"),
            (
                [
                    _coin("ETH", native=True),
                    _coin("A", contract="0x" + "ab" * 20),
                    _coin("B", contract="0x" + "AB" * 20),
                ],
                "tokens A and B have the same contract",
            ),
        ],
        ids=["no-native", "two-natives", "native-with-contract", "token-no-contract", "invalid-contract", "shared"],
    )
    def test_refuses_coins_that_leave_a_transfer_ambiguous(self, coins, problem):
        with pytest.raises(coins_selectors.CoinMisconfigured) as refused:
            coins_selectors.chain_coins_check(chain_id="ETH", coins=coins, contract_key=_key)

        assert problem in refused.value.message

    def test_maps_each_token_by_its_canonical_contract(self):
        coins = [_coin("ETH", native=True), _coin("USDT", contract="0x" + "AB" * 20)]

        checked = coins_selectors.chain_coins_check(chain_id="ETH", coins=coins, contract_key=_key)

        assert checked.native.coin_id == "ETH"
        assert {key: coin.coin_id for key, coin in checked.tokens.items()} == {"0x" + "ab" * 20: "USDT"}


class TestCoinAdmin:
    @pytest.fixture
    def admin_client(self, client):
        client.force_login(get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1"))
        return client

    def _form(self, coin: CoinConfig, **changes: object) -> dict:
        fields = [f.name for f in CoinConfig._meta.concrete_fields if f.editable and not f.primary_key]
        data = {name: getattr(coin, name) for name in fields}
        data.update(changes)
        return {k: ("" if v is None else ("on" if v is True else v)) for k, v in data.items() if v is not False}

    def test_a_token_saved_with_a_blank_contract_gets_a_field_error_and_nothing_is_written(self, admin_client):
        usdt = CoinConfig.objects.get(coin_id="USDT-ERC20")

        response = admin_client.post(
            f"/admin/coins/coinconfig/{usdt.pk}/change/", self._form(usdt, contract_address="")
        )

        assert response.status_code == 200
        assert "contract_address" in response.context["adminform"].form.errors
        assert CoinConfig.objects.get(pk=usdt.pk).contract_address == usdt.contract_address

    def test_a_valid_edit_is_saved_through_the_service(self, admin_client):
        # A setting outside the four-eyes list (a limit would become a proposal: controls/tests).
        usdt = CoinConfig.objects.get(coin_id="USDT-ERC20")

        response = admin_client.post(
            f"/admin/coins/coinconfig/{usdt.pk}/change/", self._form(usdt, coin_name="Tether (ERC20)")
        )

        assert response.status_code == 302
        assert CoinConfig.objects.get(pk=usdt.pk).coin_name == "Tether (ERC20)"
