"""
Hot surplus to cold on the TRON fake (tronpy-signed transactions checked like a node does, TRX
balances and fees kept, TRC20 run on a real EVM): TRX and USDT-TRC20 moved once each, their network
fees booked exactly as the chain charged them. Every key here is TEST-ONLY.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from tronpy.keys import PrivateKey

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from assets.models import BusinessType, HouseFlow
from coins.models import CoinConfig
from treasury import sending
from treasury import services as treasury_services
from treasury.models import TransferStatus, TreasuryTransfer
from treasury.tests.helpers import limits_set, operator, reading_store

pytestmark = pytest.mark.django_db(transaction=True)

TRX = 10**6


@pytest.fixture
def hot(db, monkeypatch, settings, tmp_path, tron_node):
    """A hot address of the withdraw pool holding 1,000 TRX and 1,000 test USDT-TRC20."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    settings.TREASURY_AUTO_SEND_COINS = []
    CoinConfig.objects.filter(chain_id="TRON").update(required_confirmations=2)
    signer.hd_wallet_create(
        chain_id="TRON", purpose=AddressType.HOT, mnemonic=signer.mnemonic_generate(), label="test-only"
    )
    (row,) = addresses_services.hot_addresses_create(chain_id="TRON", wallet_type="withdraw", count=1)
    tron_node.fund(row.address, 1000 * TRX)
    usdt = tron_node.trc20_deploy(owner=row.address, supply=1000 * TRX)
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=usdt)
    return row, usdt


def test_trx_and_usdt_trc20_surpluses_go_to_cold_once(hot, tron_node, tron_adapter):
    row, usdt = hot
    cold = addresses_services.cold_address_add(
        chain_id="TRON",
        address=PrivateKey.random().public_key.to_base58check_address(),  # TEST-ONLY
    )
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=row, coin_id="TRX", low="10", high="600", proposer=alice, approver=bob)
    limits_set(address=row, coin_id="USDT-TRC20", low=None, high="300", proposer=alice, approver=bob)
    reading_store(adapter=tron_adapter)

    assert treasury_services.treasury_plan(chain_id="TRON").proposed == 2
    for transfer in TreasuryTransfer.objects.order_by("id"):
        treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=bob, remark="policy")
    for _ in range(4):
        sending.treasury_send(chain_id="TRON", adapter=tron_adapter)
        tron_node.mine(1)
        sending.treasury_confirm(chain_id="TRON", adapter=tron_adapter)

    transfers = {t.coin_id: t for t in TreasuryTransfer.objects.all()}
    assert {c: t.status for c, t in transfers.items()} == {
        "TRX": TransferStatus.CONFIRMED,
        "USDT-TRC20": TransferStatus.CONFIRMED,
    }
    assert (transfers["TRX"].amount, transfers["USDT-TRC20"].amount) == (Decimal(400), Decimal(700))
    assert tron_adapter.balance(cold.address) == 400 * TRX
    assert tron_adapter.balance(cold.address, contract=usdt) == 700 * TRX
    assert tron_adapter.balance(row.address, contract=usdt) == 300 * TRX
    charged = sum(tron_adapter.tx_status(t.tx_hash).fee for t in transfers.values())
    booked = HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE)
    assert charged > 0
    assert -sum(f.amount for f in booked) == Decimal(charged) / TRX
    assert tron_adapter.balance(row.address) == 600 * TRX - charged  # fees paid from what stays hot
