"""
Which hot address pays (seed 3.1.2) on real balances read from ganache: by balance the richest of
the withdraw pool pays, round robin takes turns, by region the user's region pays with a fallback,
and another business's pool never pays. Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType, WalletAddress
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from monitoring.models import HotBalance
from withdrawals import payout as withdrawals_payout
from withdrawals.tests.test_onchain import ONE_ETH, approved

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def pool(monkeypatch, settings, tmp_path, evm_node, evm_adapter):
    """Hot addresses of the withdraw pool holding 2, 9 and 5 ETH (read from the node); one of pool otc with 50."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    signer.hd_wallet_create(
        chain_id="ETH", purpose=AddressType.HOT, mnemonic=signer.mnemonic_generate(), label="test-only"
    )
    rows = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=3)
    (other,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="otc", count=1)
    for row, eth in zip([*rows, other], (2, 9, 5, 50), strict=True):
        evm_node.send_tx({"to": row.address, "value": eth * ONE_ETH})
    for row in [*rows, other]:
        HotBalance.objects.create(
            chain_id="ETH",
            address=row.address,
            coin_id="ETH",
            balance=Decimal(evm_adapter.balance(row.address)) / ONE_ETH,
            read_at=timezone.now(),
        )
    # The seed's balance column says otherwise; nothing keeps it, so it must not count.
    WalletAddress.objects.filter(id=rows[0].id).update(balance=Decimal(1000))
    return rows


def _payer(user, amount: str, key: str, evm_adapter) -> str:
    record, _ = approved(user, amount, key=key)
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    record.refresh_from_db()
    return record.from_address


def test_by_balance_the_richest_address_of_the_pool_pays(pool, settings, evm_adapter):
    settings.WITHDRAW_HOT_WALLET_STRATEGY = "balance"
    _poor, rich, _middle = pool
    user = get_user_model().objects.create_user("balance-user")

    assert _payer(user, "1", "a", evm_adapter) == rich.address


def test_round_robin_takes_turns_among_those_that_hold_the_amount(pool, settings, evm_adapter):
    settings.WITHDRAW_HOT_WALLET_STRATEGY = "round_robin"
    _poor, rich, middle = pool
    user = get_user_model().objects.create_user("rr-user")

    payers = [_payer(user, "3", key, evm_adapter) for key in ("a", "b", "c")]

    assert payers == [rich.address, middle.address, rich.address]  # 2 ETH cannot pay 3


def test_by_region_the_users_region_pays_with_a_fallback(pool, settings, evm_adapter):
    settings.WITHDRAW_HOT_WALLET_STRATEGY = "region"
    poor, rich, middle = pool
    addresses_services.hot_address_region_set(address_id=middle.id, region="eu")
    addresses_services.hot_address_region_set(address_id=poor.id, region="asia")
    european = get_user_model().objects.create_user("eu-user")
    addresses_services.user_region_set(user_id=european.id, region="eu")
    asian = get_user_model().objects.create_user("asia-user")
    addresses_services.user_region_set(user_id=asian.id, region="asia")

    assert _payer(european, "1", "a", evm_adapter) == middle.address
    assert _payer(asian, "3", "b", evm_adapter) == rich.address  # asia's address holds 2: the untagged one pays
