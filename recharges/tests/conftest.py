from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model

from addresses.models import AddressType, WalletAddress
from coins.models import CoinConfig
from recharges import services as recharges_services
from recharges import watchlist
from recharges.tests.fakechain import FakeChain, eth_address

NATIVE = {"ETH": "ETH", "BTC": "BTC", "TRON": "TRX"}


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    # Users are only owners of deposits here; a slow password hash per user adds nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_scanner_state():
    watchlist.watchlist_reset()
    recharges_services.fault_hook = None
    yield
    watchlist.watchlist_reset()
    recharges_services.fault_hook = None


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
