from __future__ import annotations

from decimal import Decimal

import pytest

from assets import services as assets_services
from assets.models import BusinessType
from coins.models import CoinConfig

pytestmark = pytest.mark.django_db


def post(user, coin_id, amount, ref, op=assets_services.balance_credit, business_type=BusinessType.RECHARGE):
    return op(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id=coin_id),
        amount=Decimal(amount),
        business_type=business_type,
        biz_ref=ref,
    )


class TestBalanceListApi:
    def test_shows_only_the_callers_balances(self, auth_client, user, other_user):
        post(user, "BTC", "0.5", "r1")
        post(user, "ETH", "2", "r2")
        post(other_user, "BTC", "9", "r3")

        response = auth_client.get("/api/v1/balances")

        assert response.status_code == 200
        assert response.json()["results"] == [
            {"coin_id": "BTC", "available": "0.5", "frozen": "0", "debt": "0"},
            {"coin_id": "ETH", "available": "2", "frozen": "0", "debt": "0"},
        ]

    def test_needs_a_token(self, api_client):
        response = api_client.get("/api/v1/balances")

        assert response.status_code == 401
        assert set(response.json()) == {"code", "message", "fields"}


class TestFlowListApi:
    def test_pages_the_callers_flows_newest_first(self, auth_client, user, other_user):
        for i in range(5):
            post(user, "BTC", "1", f"r{i}")
        post(other_user, "BTC", "1", "other")

        first = auth_client.get("/api/v1/flows?page_size=3").json()
        second = auth_client.get(first["next"]).json()

        refs = [f["biz_ref"] for f in first["results"] + second["results"]]
        assert refs == ["r4", "r3", "r2", "r1", "r0"]
        assert second["next"] is None
        assert first["results"][0]["balance_after"] == "5"

    def test_filters_by_coin_and_business_type(self, auth_client, user):
        post(user, "BTC", "1", "r1")
        post(user, "ETH", "1", "r2")
        post(user, "BTC", "0.4", "w1", op=assets_services.balance_freeze, business_type=BusinessType.WITHDRAW_FREEZE)

        response = auth_client.get("/api/v1/flows?coin=BTC&business_type=2")

        assert [(f["biz_ref"], f["amount"], f["frozen_amount"]) for f in response.json()["results"]] == [
            ("w1", "-0.4", "0.4")
        ]

    @pytest.mark.parametrize(
        ("query", "field"),
        [
            ("business_type=99", "business_type"),
            ("since=yesterday", "since"),
            ("since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"),
        ],
    )
    def test_refuses_bad_filters_with_a_field_error(self, auth_client, query, field):
        response = auth_client.get(f"/api/v1/flows?{query}")

        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid"
        assert field in body["fields"]


class TestCoinListApi:
    def test_lists_the_five_coins_publicly(self, api_client):
        response = api_client.get("/api/v1/coins")

        assert response.status_code == 200
        coins = {c["coin_id"]: c for c in response.json()["results"]}
        assert list(coins) == ["BTC", "ETH", "USDT-ERC20", "TRX", "USDT-TRC20"]
        assert coins["USDT-ERC20"]["decimals"] == 6 and coins["USDT-ERC20"]["chain_id"] == "ETH"
        assert coins["BTC"]["withdraw_fee"] == "0.0005"


class TestLedgerAdmin:
    def test_shows_balances_and_flows_read_only(self, admin_client, user):
        flow = post(user, "BTC", "1", "r1")
        balance_id = flow.user.balance_set.get().id

        listing = admin_client.get("/admin/assets/flow/")
        edit = admin_client.post(f"/admin/assets/balance/{balance_id}/change/", {"available": "1000"})
        delete = admin_client.post(f"/admin/assets/flow/{flow.id}/delete/", {"post": "yes"})

        assert listing.status_code == 200 and flow.flow_no.encode() in listing.content
        assert edit.status_code == 403 and delete.status_code == 403
        assert flow.user.balance_set.get().available == Decimal("1")
