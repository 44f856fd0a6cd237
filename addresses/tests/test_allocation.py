"""GET /api/v1/wallet/deposit-address: allocation from the pool, bad input, and concurrency on MariaDB."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from addresses import services
from addresses.models import AddressType, WalletAddress
from coins.models import CoinConfig, Switch

URL = "/api/v1/wallet/deposit-address"


@pytest.mark.django_db
class TestDepositAddressApi:
    def test_assigns_a_pool_address_on_first_request_and_keeps_it(self, deposit_seeds, user_client, user):
        services.address_pool_fill(chain_id="TRON", count=3)
        first_in_pool = WalletAddress.objects.filter(chain_id="TRON").order_by("id").first()

        first = user_client.get(URL, {"coin": "USDT-TRC20"})
        again = user_client.get(URL, {"coin": "TRX"})

        assert first.status_code == 200
        assert first.json() == {"coin": "USDT-TRC20", "chain_id": "TRON", "address": first_in_pool.address}
        assert again.json()["address"] == first_in_pool.address
        row = WalletAddress.objects.get(user=user)
        assert row.id == first_in_pool.id and row.assign_time is not None
        assert WalletAddress.objects.filter(chain_id="TRON", user__isnull=True).count() == 2

    def test_gives_one_address_per_chain(self, deposit_seeds, user_client):
        addresses = {c: user_client.get(URL, {"coin": c}).json()["address"] for c in ("BTC", "ETH", "USDT-ERC20")}

        assert addresses["ETH"] == addresses["USDT-ERC20"]
        assert addresses["BTC"].startswith("bcrt1q") and addresses["ETH"].startswith("0x")

    def test_derives_one_when_the_pool_is_empty(self, deposit_seeds, user_client, user):
        response = user_client.get(URL, {"coin": "ETH"})

        row = WalletAddress.objects.get(user=user)
        assert response.status_code == 200 and response.json()["address"] == row.address
        assert row.derivation_index == 0 and row.address_type == AddressType.USER_DEPOSIT

    def test_two_users_get_different_addresses(self, deposit_seeds, user_client, other_user, leak_watch):
        from rest_framework_simplejwt.tokens import RefreshToken

        from addresses.tests.conftest import RecordingClient

        services.address_pool_fill(chain_id="BTC", count=2)
        other = RecordingClient(leak_watch)
        other.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(other_user).access_token}")

        mine, theirs = user_client.get(URL, {"coin": "BTC"}), other.get(URL, {"coin": "BTC"})

        assert mine.json()["address"] != theirs.json()["address"]

    def test_needs_authentication(self, deposit_seeds, api_recorder):
        assert api_recorder.get(URL, {"coin": "ETH"}).status_code == 401


@pytest.mark.django_db
class TestBadInput:
    def test_refuses_an_unknown_coin(self, deposit_seeds, user_client):
        response = user_client.get(URL, {"coin": "DOGE"})

        assert response.status_code == 400
        assert response.json() == {
            "code": "unknown_coin",
            "message": "Unknown coin 'DOGE'.",
            "fields": {"coin": ["Unknown coin 'DOGE'."]},
        }

    def test_refuses_a_disabled_coin(self, deposit_seeds, user_client):
        CoinConfig.objects.filter(coin_id="USDT-TRC20").update(status=Switch.DISABLED)

        response = user_client.get(URL, {"coin": "USDT-TRC20"})

        assert response.status_code == 400
        assert response.json()["code"] == "coin_disabled"
        assert list(response.json()["fields"]) == ["coin"]
        assert not WalletAddress.objects.exists()

    def test_refuses_a_coin_whose_deposits_are_off(self, deposit_seeds, user_client):
        CoinConfig.objects.filter(coin_id="ETH").update(recharge_enabled=Switch.DISABLED)

        response = user_client.get(URL, {"coin": "ETH"})

        assert response.status_code == 400 and response.json()["code"] == "recharge_disabled"

    @pytest.mark.parametrize("query", [{}, {"coin": ""}, {"coin": "X" * 40}])
    def test_refuses_a_missing_or_malformed_coin(self, deposit_seeds, user_client, query):
        response = user_client.get(URL, query)

        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "invalid" and list(body["fields"]) == ["coin"]

    def test_says_when_the_chain_has_no_deposit_seed(self, seeded_coins, user_client):
        response = user_client.get(URL, {"coin": "ETH"})

        assert response.status_code == 503 and response.json()["code"] == "hd_wallet_missing"


def _run_together(count: int, work) -> list:
    barrier = threading.Barrier(count)
    results: list = [None] * count
    errors: list = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[i] = work(i)
        except Exception as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    return results


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
class TestConcurrentAllocation:
    def test_concurrent_first_requests_of_one_user_get_the_same_address(self, deposit_seeds, user):
        services.address_pool_fill(chain_id="TRON", count=10)

        rows = _run_together(8, lambda i: services.deposit_address_assign(user=user, coin_id="USDT-TRC20"))

        assert len({r.address for r in rows}) == 1
        assert WalletAddress.objects.filter(user=user).count() == 1
        assert WalletAddress.objects.filter(chain_id="TRON", user__isnull=True).count() == 9

    def test_concurrent_users_never_share_a_pool_address(self, deposit_seeds):
        users = [get_user_model().objects.create_user(username=f"racer{i}") for i in range(8)]
        services.address_pool_fill(chain_id="ETH", count=20)

        rows = _run_together(8, lambda i: services.deposit_address_assign(user=users[i], coin_id="ETH"))

        assert len({r.address for r in rows}) == 8
        assigned = WalletAddress.objects.filter(chain_id="ETH", user__isnull=False)
        assert assigned.count() == 8 and len(set(assigned.values_list("user_id", flat=True))) == 8

    def test_concurrent_users_with_an_empty_pool_get_distinct_derived_addresses(self, deposit_seeds):
        users = [get_user_model().objects.create_user(username=f"late{i}") for i in range(6)]

        rows = _run_together(6, lambda i: services.deposit_address_assign(user=users[i], coin_id="BTC"))

        assert len({r.address for r in rows}) == 6
        assert sorted(r.derivation_index for r in rows) == list(range(6))
