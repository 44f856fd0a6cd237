"""
Fixtures of the sweep tests: the vault's seeds, the hot and gas-station addresses, deposit addresses
from the real allocation, deposits credited by the real scanner. Every key and mnemonic here is a
TEST-ONLY throwaway of a local dev chain.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType, WalletAddress
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from sweeps import common as sweeps_common

NATIVE = {"ETH": "ETH", "TRON": "TRX", "BTC": "BTC"}


@pytest.fixture(autouse=True)
def _no_fault():
    sweeps_common.fault_hook = None
    yield
    sweeps_common.fault_hook = None


@pytest.fixture(autouse=True)
def _one_worker(request, settings):
    # A test inside a transaction (no transaction=True) is invisible to other threads' connections.
    marker = request.node.get_closest_marker("django_db")
    if not (marker is not None and marker.kwargs.get("transaction")):
        settings.SWEEP_WORKERS = 1


@pytest.fixture
def vault(monkeypatch, settings, tmp_path):
    """The test key-encryption key, in the environment (a worker subprocess inherits it)."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"


def seeds_create(chain_id: str) -> None:
    for purpose in (AddressType.USER_DEPOSIT, AddressType.HOT):
        signer.hd_wallet_create(
            chain_id=chain_id, purpose=purpose, mnemonic=signer.mnemonic_generate(), label="test-only"
        )


def hot_and_station(chain_id: str) -> tuple[WalletAddress, WalletAddress | None]:
    (hot,) = addresses_services.hot_addresses_create(chain_id=chain_id, wallet_type="withdraw", count=1)
    station = None
    if chain_id != "BTC":
        (station,) = addresses_services.hot_addresses_create(chain_id=chain_id, wallet_type="gas", count=1)
    return hot, station


def deposit_addresses(chain_id: str, count: int, *, prefix: str = "depositor") -> list[WalletAddress]:
    """count users, each given a deposit address of chain_id by the real allocation (pool first)."""
    addresses_services.address_pool_fill(chain_id=chain_id, count=count, pipelined=False)
    users = [get_user_model().objects.create_user(f"{prefix}-{chain_id}-{i}") for i in range(count)]
    return [addresses_services.deposit_address_assign(user=user, coin_id=NATIVE[chain_id]) for user in users]


def house_network_fees(coin_id: str) -> Decimal:
    from assets.models import HouseAccount, HouseBalance

    row = HouseBalance.objects.filter(account=HouseAccount.NETWORK_FEES, coin_id=coin_id).first()
    return row.balance if row else Decimal(0)
