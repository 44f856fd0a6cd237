from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from addresses import hd, signer
from addresses import services as addresses_services
from addresses.models import AddressType, WalletAddress
from coins.models import CoinConfig
from recharges import services as recharges_services
from recharges import shortfalls, watchlist
from recharges.tests.fakechain import FakeChain, eth_address

NATIVE = {"ETH": "ETH", "BTC": "BTC", "TRON": "TRX"}


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # Users are only owners of deposits here; a slow password hash per user adds nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_scanner_state():
    watchlist.watchlist_reset()
    recharges_services.fault_hook = shortfalls.fault_hook = None
    yield
    watchlist.watchlist_reset()
    recharges_services.fault_hook = shortfalls.fault_hook = None


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def chain(db, settings) -> FakeChain:
    settings.SCAN_START_HEIGHTS = {"ETH": 0, "BTC": 0, "TRON": 0}
    # Few confirmations keep the scripted chains short.
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=3)
    return FakeChain("ETH")


def deposit_address(*, user, chain_id: str = "ETH", address: str | None = None, n: int = 1) -> WalletAddress:
    """A user's deposit address row, as the addresses app's allocation leaves it."""
    return WalletAddress.objects.create(
        coin_id=NATIVE[chain_id],
        coin_name=NATIVE[chain_id],
        chain_id=chain_id,
        address_type=AddressType.USER_DEPOSIT,
        address=address or eth_address(n),
        user=user,
    )


def make_user(name: str):
    return get_user_model().objects.create_user(username=name, password=f"{name}-password-1")


# TEST-ONLY: a throwaway key-encryption key and the BIP39 reference mnemonic (entropy 00..00).
TEST_KEK = "1:" + base64.b64encode(bytes(range(1, 33))).decode()
TEST_MNEMONIC_DEPOSIT = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"


@pytest.fixture
def deposit_seeds(db, monkeypatch, settings, tmp_path):
    """Deposit HD seeds of every chain from the throwaway test mnemonic, under a throwaway KEK.

    BTC addresses use bcoin's regtest prefix (rb), as the dev node does.
    """
    monkeypatch.setenv("WALLET_KEK", TEST_KEK)
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_KEK_VERSION = 0
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    settings.BTC_NETWORK = "regtest"
    settings.BTC_REGTEST_HRP = "rb"
    return {
        chain: signer.hd_wallet_create(
            chain_id=chain, purpose=AddressType.USER_DEPOSIT, mnemonic=TEST_MNEMONIC_DEPOSIT, label="test-only"
        )
        for chain in hd.CHAINS
    }


def assigned_address(*, user, coin_id: str) -> str:
    """The user's deposit address for coin_id, allocated by the addresses app (derived on demand)."""
    return addresses_services.deposit_address_assign(user=user, coin_id=coin_id).address
