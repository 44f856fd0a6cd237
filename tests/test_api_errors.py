"""What API clients see when something is wrong: one error shape, one code per cause, on every endpoint."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_utils import to_checksum_address
from rest_framework.test import APIClient

from assets import services as assets_services
from assets.models import BusinessType
from coins.models import CoinConfig, Switch
from withdrawals.models import WithdrawRecord

pytestmark = pytest.mark.django_db

OUTSIDE = to_checksum_address("0x" + "5e" * 20)
WITHDRAWALS = "/api/v1/wallet/withdrawals"

# Every endpoint that names a coin, as (method, path, request data for that coin).
COIN_ENDPOINTS = {
    "apply for a withdrawal": (
        "post",
        WITHDRAWALS,
        lambda coin: {"coin": coin, "to_address": OUTSIDE, "amount": "1", "idempotency_key": "e-1"},
    ),
    "list withdrawals": ("get", WITHDRAWALS, lambda coin: {"coin": coin}),
    "deposit address": ("get", "/api/v1/wallet/deposit-address", lambda coin: {"coin": coin}),
    "list deposits": ("get", "/api/v1/wallet/recharges", lambda coin: {"coin": coin}),
    "list flows": ("get", "/api/v1/flows", lambda coin: {"coin": coin}),
}
# The endpoints a coin is required by (the others filter by it).
COIN_REQUIRED = ["apply for a withdrawal", "deposit address"]


def call(client: APIClient, endpoint: str, coin: str | None):
    method, path, data = COIN_ENDPOINTS[endpoint]
    body = data(coin)
    if coin is None:
        body.pop("coin")
    if method == "post":
        return client.post(path, body, format="json")
    return client.get(path, body)


def fund(user, amount: str = "500") -> None:
    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id="ETH"),
        amount=Decimal(amount),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{user.id}",
    )


class TestCoinErrors:
    @pytest.mark.parametrize("endpoint", sorted(COIN_ENDPOINTS))
    def test_an_unknown_coin_is_a_400_on_the_coin_field(self, auth_client, endpoint):
        response = call(auth_client, endpoint, "DOGE")

        assert response.status_code == 400, response.json()
        assert response.json() == {
            "code": "unknown_coin",
            "message": "Unknown coin 'DOGE'.",
            "fields": {"coin": ["Unknown coin 'DOGE'."]},
        }

    @pytest.mark.parametrize("endpoint", COIN_REQUIRED)
    def test_a_disabled_coin_is_a_400_on_the_coin_field(self, auth_client, endpoint):
        CoinConfig.objects.filter(coin_id="ETH").update(status=Switch.DISABLED)

        response = call(auth_client, endpoint, "ETH")

        assert response.status_code == 400, response.json()
        assert response.json()["code"] == "coin_disabled"
        assert list(response.json()["fields"]) == ["coin"]

    @pytest.mark.parametrize("endpoint", COIN_REQUIRED)
    def test_a_missing_coin_is_a_400_on_the_coin_field(self, auth_client, endpoint):
        response = call(auth_client, endpoint, None)

        assert response.status_code == 400, response.json()
        assert response.json()["code"] == "invalid"
        assert list(response.json()["fields"]) == ["coin"]

    @pytest.mark.parametrize("endpoint", sorted(set(COIN_ENDPOINTS) - set(COIN_REQUIRED)))
    def test_a_list_still_shows_the_history_of_a_disabled_coin(self, auth_client, endpoint):
        CoinConfig.objects.filter(coin_id="ETH").update(status=Switch.DISABLED)

        assert call(auth_client, endpoint, "ETH").status_code == 200


# Every endpoint that needs a token, as (method, path).
AUTHENTICATED = [
    ("get", "/api/v1/balances"),
    ("get", "/api/v1/flows"),
    ("get", "/api/v1/wallet/deposit-address?coin=ETH"),
    ("get", "/api/v1/wallet/recharges"),
    ("get", WITHDRAWALS),
    ("post", WITHDRAWALS),
    ("get", f"{WITHDRAWALS}/W1"),
    ("post", f"{WITHDRAWALS}/W1/cancel"),
    ("get", "/api/v1/wallet/reserves/proof?coin=BTC"),
    ("get", "/api/v1/wallet/address-book"),
    ("post", "/api/v1/wallet/address-book"),
    ("delete", "/api/v1/wallet/address-book/1"),
    ("get", "/api/v1/wallet/address-book/settings"),
    ("put", "/api/v1/wallet/address-book/settings"),
    ("get", "/api/v1/ops/breakers"),
    ("post", "/api/v1/ops/breakers/ETH/trip"),
]


class TestBadToken:
    @pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
    @pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
    def test_a_bad_bearer_token_is_one_clear_401(self, api_client, method, path, token):
        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

        response = getattr(api_client, method)(path, format="json")

        assert response.status_code == 401
        assert response.json() == {
            "code": "token_not_valid",
            "message": "The token is invalid or expired: obtain a new one (auth/token or auth/token/refresh).",
            "fields": {},
        }

    @pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
    def test_no_token_is_one_clear_401(self, api_client, method, path):
        response = getattr(api_client, method)(path, format="json")

        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"
        assert response.json()["fields"] == {}

    def test_every_authenticated_endpoint_is_in_this_test(self):
        from wallet_project.urls import api_v1

        public = {"token-obtain", "token-refresh", "health", "coin-list"}
        named = {p.name for p in api_v1} - public
        assert named == {
            "balance-list", "flow-list", "deposit-address", "recharge-list", "withdrawal-list", "withdrawal-get",
            "withdrawal-cancel", "reserves-proof", "address-book", "address-book-entry", "address-book-settings",
            "ops-breakers", "ops-breaker-trip",
        }  # fmt: skip


class TestWithdrawalRefusals:
    """Each refusal has its own code, and amounts read as a person writes them."""

    @pytest.mark.parametrize(
        ("change", "amount", "code", "field", "message"),
        [
            ({}, "0.001", "amount_below_minimum", "amount", "The minimum withdrawal is 0.01 ETH."),
            ({}, "1001", "amount_above_maximum", "amount", "The maximum withdrawal is 1000 ETH."),
            (
                {"withdraw_fee": Decimal("0.25")},
                "0.25",
                "amount_below_fee",
                "amount",
                "The amount does not cover the fee of 0.25 ETH.",
            ),
            (
                {"withdraw_daily_limit": Decimal("1.5")},
                "2",
                "daily_limit_exceeded",
                "amount",
                "The daily withdrawal limit of 1.5 ETH would be exceeded (0 ETH used today).",
            ),
            (
                {"withdraw_enabled": Switch.DISABLED},
                "1",
                "withdraw_disabled",
                "coin",
                "Withdrawals of ETH are switched off.",
            ),
        ],
    )
    def test_names_the_cause_and_prints_amounts_without_trailing_zeros(
        self, user, auth_client, change, amount, code, field, message
    ):
        fund(user)
        CoinConfig.objects.filter(coin_id="ETH").update(**change)
        body = {"coin": "ETH", "to_address": OUTSIDE, "amount": amount, "idempotency_key": "r-1"}

        response = auth_client.post(WITHDRAWALS, body, format="json")

        assert response.status_code == 400, response.json()
        assert response.json()["code"] == code
        assert list(response.json()["fields"]) == [field]
        assert response.json()["message"] == message
        assert WithdrawRecord.objects.count() == 0

    def test_a_key_used_for_another_withdrawal_is_a_409_of_its_own(self, user, auth_client):
        fund(user)
        body = {"coin": "ETH", "to_address": OUTSIDE, "amount": "1", "idempotency_key": "same"}
        assert auth_client.post(WITHDRAWALS, body, format="json").status_code == 201

        response = auth_client.post(WITHDRAWALS, {**body, "amount": "2"}, format="json")

        assert response.status_code == 409
        assert response.json()["code"] == "idempotency_key_reused"
        assert list(response.json()["fields"]) == ["idempotency_key"]

    def test_more_than_the_balance_says_so(self, user, auth_client):
        fund(user, "1")

        response = auth_client.post(
            WITHDRAWALS,
            {"coin": "ETH", "to_address": OUTSIDE, "amount": "2", "idempotency_key": "b-1"},
            format="json",
        )

        assert response.status_code == 400
        assert response.json()["code"] == "insufficient_funds"

    @pytest.mark.parametrize(("owner", "code"), [("self", "own_deposit_address"), ("exchange", "exchange_address")])
    def test_an_address_of_ours_that_cannot_be_paid_is_named(self, user, auth_client, owner, code):
        from addresses.models import AddressType, WalletAddress

        fund(user)
        address = to_checksum_address("0x" + "7d" * 20)
        WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address=address,
            address_type=AddressType.USER_DEPOSIT if owner == "self" else AddressType.HOT,
            user=user if owner == "self" else None,
        )  # fmt: skip

        response = auth_client.post(
            WITHDRAWALS, {"coin": "ETH", "to_address": address, "amount": "1", "idempotency_key": "o-1"}, format="json"
        )

        assert response.status_code == 400
        assert response.json()["code"] == code
        assert list(response.json()["fields"]) == ["to_address"]
