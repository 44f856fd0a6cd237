"""
Treasury receipts and unclaimed deposits on a real EVM dev node (ganache): money from outside at
the exchange's own addresses is booked to the house once, internal transfers book nothing, and a
reorg reverses what it orphaned. Every key is TEST-ONLY.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from eth_account import Account

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, HouseAccount, HouseFlow
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from recharges import services as recharges_services
from recharges.models import RechargeRecord, RechargeStatus, TreasuryReceipt, TreasuryStatus
from recharges.tests.helpers import tick

pytestmark = pytest.mark.slow
ONE_ETH = 10**18


@pytest.fixture
def hot_words(db, monkeypatch, settings, tmp_path, evm_adapter) -> str:
    """Fresh deposit and hot seeds of ETH; the scanner started at the node's tip. Returns the hot mnemonic."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    settings.SCAN_START_HEIGHTS = {}
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    words = signer.mnemonic_generate()
    signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.HOT, mnemonic=words, label="test-only")
    signer.hd_wallet_create(
        chain_id="ETH", purpose=AddressType.USER_DEPOSIT, mnemonic=signer.mnemonic_generate(), label="test-only"
    )
    recharges_services.scan_cursor_ensure(chain_id="ETH", adapter=evm_adapter)
    return words


def _signed(evm_node, to: str, value: int) -> bytes:
    """A transfer from the node's first account, signed once so that it can be sent again after a reorg."""
    sender = evm_node.accounts[0]
    w3 = evm_node.w3
    tx = {
        "to": to,
        "value": value,
        "gas": 21_000,
        "gasPrice": w3.eth.gas_price,
        "nonce": w3.eth.get_transaction_count(sender.address),
        "chainId": w3.eth.chain_id,
    }
    return sender.sign_transaction(tx).raw_transaction


def test_a_receipt_is_booked_once_reversed_by_a_reorg_and_booked_again_when_mined_again(
    hot_words, evm_node, evm_adapter
):
    (hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=1)
    snapshot = evm_node.snapshot()
    raw = _signed(evm_node, hot.address, 5 * ONE_ETH)
    evm_node.w3.eth.send_raw_transaction(raw)
    tick(evm_adapter, timezone.now())
    assert TreasuryReceipt.objects.get().status == TreasuryStatus.PENDING  # one confirmation of two
    evm_node.mine(1)
    tick(evm_adapter, timezone.now())
    tick(evm_adapter, timezone.now())  # again: nothing more
    assert assets_selectors.house_balances(coin_id="ETH") == {HouseAccount.TREASURY: Decimal(5)}

    evm_node.revert(snapshot)
    evm_node.mine(3)  # a longer branch without it
    tick(evm_adapter, timezone.now())
    receipt = TreasuryReceipt.objects.get()
    assert receipt.status == TreasuryStatus.REORGED
    assert assets_selectors.house_balances(coin_id="ETH") == {HouseAccount.TREASURY: Decimal(0)}

    evm_node.w3.eth.send_raw_transaction(raw)  # the same transaction, mined on the new branch
    evm_node.mine(1)
    tick(evm_adapter, timezone.now())
    receipt.refresh_from_db()
    assert (receipt.status, receipt.generation) == (TreasuryStatus.BOOKED, 1)
    flows = list(HouseFlow.objects.order_by("id").values_list("biz_ref", "amount"))
    assert flows == [
        (f"treasury-{receipt.id}", Decimal(5)),
        (f"treasury-{receipt.id}-reorg", Decimal(-5)),
        (f"treasury-{receipt.id}-g1", Decimal(5)),
    ]
    assert not Flow.objects.exists()  # never a user's credit
    assert assets_selectors.house_mismatches() == []


def test_a_transfer_between_exchange_addresses_is_internal_and_books_nothing(hot_words, evm_node, evm_adapter):
    (hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=1)
    (gas_station,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="gas", count=1)
    evm_node.send_tx({"to": hot.address, "value": 2 * ONE_ETH})
    key = Account.from_mnemonic(hot_words, account_path=hot.derivation_path)  # TEST-ONLY, outside the system
    assert key.address == hot.address
    w3 = evm_node.w3
    signed = key.sign_transaction(
        {
            "to": gas_station.address,
            "value": ONE_ETH,
            "gas": 21_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": 0,
            "chainId": w3.eth.chain_id,
        }
    )
    w3.eth.send_raw_transaction(signed.raw_transaction)
    evm_node.mine(2)
    tick(evm_adapter, timezone.now())

    (receipt,) = TreasuryReceipt.objects.all()  # the funding from outside; not the hot -> gas station move
    assert (receipt.to_address, receipt.amount, receipt.status) == (hot.address, Decimal(2), TreasuryStatus.BOOKED)


def test_a_deposit_below_the_minimum_is_the_houses_until_a_reorg_takes_it(hot_words, evm_node, evm_adapter):
    user = get_user_model().objects.create_user("dust-owner", password="dust-owner-password-1")
    address = addresses_services.deposit_address_assign(user=user, coin_id="ETH").address
    snapshot = evm_node.snapshot()
    evm_node.send_tx({"to": address, "value": 5 * 10**14})  # 0.0005 ETH, below the minimum of 0.001
    evm_node.mine(1)
    tick(evm_adapter, timezone.now())
    tick(evm_adapter, timezone.now())

    record = RechargeRecord.objects.get()
    assert record.status == RechargeStatus.BELOW_MINIMUM
    unclaimed = HouseFlow.objects.get(business_type=BusinessType.HOUSE_UNCLAIMED_DEPOSIT)
    assert (unclaimed.account, unclaimed.amount, unclaimed.biz_ref) == (
        HouseAccount.UNCLAIMED,
        Decimal("0.0005"),
        record.biz_ref,
    )
    assert not Flow.objects.exists()

    evm_node.revert(snapshot)
    evm_node.mine(3)
    tick(evm_adapter, timezone.now())
    record.refresh_from_db()
    assert record.status == RechargeStatus.REORGED
    assert assets_selectors.house_balances(coin_id="ETH") == {HouseAccount.UNCLAIMED: Decimal(0)}


def test_a_receipt_mined_again_after_a_reorg_books_what_its_key_carries_in_the_new_block(hot_words, evm_node):
    from chains.evm import EvmAdapter
    from recharges.tests.test_evm_node import PARITY_PAYER_RUNTIME, _deployed, _word

    tracing = EvmAdapter(url=evm_node.url, connect_timeout=1, read_timeout=30, trace_internal=True)
    (hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=1)
    payer = _deployed(evm_node, PARITY_PAYER_RUNTIME)  # pays a tenth at an odd height
    if (evm_node.w3.eth.block_number + 1) % 2:
        evm_node.mine(1)
    snapshot = evm_node.snapshot()
    sender = evm_node.accounts[0]
    w3 = evm_node.w3
    raw = sender.sign_transaction(
        {
            "to": payer,
            "value": ONE_ETH,
            "data": _word(hot.address),
            "gas": 100_000,
            "gasPrice": w3.eth.gas_price,
            "nonce": w3.eth.get_transaction_count(sender.address),
            "chainId": w3.eth.chain_id,
        }
    ).raw_transaction
    w3.eth.send_raw_transaction(raw)
    tick(tracing, timezone.now())
    assert TreasuryReceipt.objects.get().amount == Decimal(1)

    evm_node.revert(snapshot)
    evm_node.mine(1)
    w3.eth.send_raw_transaction(raw)  # at an odd height: a tenth
    evm_node.mine(2)
    tick(tracing, timezone.now())
    tick(tracing, timezone.now())

    receipt = TreasuryReceipt.objects.get()
    assert (receipt.status, receipt.amount) == (TreasuryStatus.BOOKED, Decimal("0.1"))
    assert assets_selectors.house_balances(coin_id="ETH") == {HouseAccount.TREASURY: Decimal("0.1")}
