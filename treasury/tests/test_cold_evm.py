"""
Hot surplus to cold on the EVM dev node (ganache): proposed by the planner, approved by ops in
the admin, signed and stored before broadcast, confirmed, its network fee booked exactly from the
receipt; below the minimum one alert; a transfer from cold to hot is no user's deposit. Every key
here is a TEST-ONLY throwaway key.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from addresses import services as addresses_services
from assets.models import BusinessType, HouseAccount, HouseFlow
from controls.models import ChangeStatus, SettingsChange
from monitoring.models import Alert
from recharges.models import RechargeRecord
from recharges.tests.helpers import tick
from treasury import sending
from treasury import services as treasury_services
from treasury.models import HotThreshold, TransferStatus, TreasuryTransfer
from treasury.tests.helpers import limits_set, operator, reading_store
from withdrawals.tests.test_onchain import ONE_ETH, _hot_address

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_fault():
    sending.fault_hook = None
    yield
    sending.fault_hook = None


@pytest.fixture
def hot(db, monkeypatch, settings, tmp_path, evm_node):
    settings.HOT_BALANCE_CHAINS = ["ETH"]
    settings.TREASURY_CHAINS = ["ETH"]
    settings.TREASURY_AUTO_SEND_COINS = []
    return _hot_address(monkeypatch, settings, tmp_path, evm_node)  # 10 ETH, 1000 USDT


@pytest.fixture
def cold(hot, evm_node):
    # A ganache account stands for the cold wallet: its key is nowhere in the wallet.
    return addresses_services.cold_address_add(chain_id="ETH", address=evm_node.accounts[5].address)


def refresh(evm_adapter) -> None:
    """Read the hot balances from the node, as the beat task hot_balances_refresh does."""
    reading_store(adapter=evm_adapter)


def run(evm_adapter, evm_node, rounds: int = 3) -> None:
    for _ in range(rounds):
        sending.treasury_send(chain_id="ETH", adapter=evm_adapter)
        evm_node.mine(1)
        sending.treasury_confirm(chain_id="ETH", adapter=evm_adapter)


def test_a_threshold_takes_effect_only_when_a_second_operator_approves(hot):
    alice, bob = operator("alice"), operator("bob")
    from treasury import thresholds

    change = thresholds.threshold_propose(
        address_id=hot.id,
        coin_id="USDT-ERC20",
        min_balance=Decimal(100),
        max_balance=Decimal(600),
        user=alice,
        reason="policy",
    )

    assert not HotThreshold.objects.exists()  # nothing before the second person
    with pytest.raises(Exception, match="second person"):
        from controls import proposals

        proposals.change_approve(change_id=change.id, user=alice)
    proposals.change_approve(change_id=change.id, user=bob, remark="ok")
    row = HotThreshold.objects.get(address=hot, coin_id="USDT-ERC20")
    assert (row.min_balance, row.max_balance) == (Decimal(100), Decimal(600))
    assert SettingsChange.objects.get(id=change.id).status == ChangeStatus.APPLIED


def test_a_surplus_above_the_maximum_goes_to_cold_after_approval_in_the_admin(hot, cold, evm_node, evm_adapter):
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=hot, coin_id="USDT-ERC20", low="100", high="600", proposer=alice, approver=bob)
    usdt = evm_node.contracts["USDT"]
    cold_before = evm_adapter.balance(cold.address, contract=usdt)
    refresh(evm_adapter)

    result = treasury_services.treasury_plan(chain_id="ETH")

    assert result.proposed == 1
    transfer = TreasuryTransfer.objects.get()
    assert (transfer.status, transfer.amount, transfer.to_address) == (
        TransferStatus.PROPOSED,
        Decimal(400),
        cold.address,
    )
    assert Alert.objects.filter(kind="TREASURY_TRANSFER_PROPOSED", resolved_at__isnull=True).count() == 1
    run(evm_adapter, evm_node)  # nothing leaves before ops approve
    assert evm_adapter.balance(cold.address, contract=usdt) == cold_before
    assert treasury_services.treasury_plan(chain_id="ETH").proposed == 0  # one open transfer per address and coin

    client = Client()
    client.force_login(alice)
    url = reverse("admin:treasury_treasurytransfer_changelist")
    page = client.post(url, {"action": "approve_transfers", "_selected_action": [transfer.id]})
    assert b"Approve transfers to cold" in page.content
    client.post(
        url, {"action": "approve_transfers", "_selected_action": [transfer.id], "apply": "1", "remark": "policy"}
    )

    transfer.refresh_from_db()
    assert (transfer.status, transfer.decided_by_id) == (TransferStatus.APPROVED, alice.id)
    assert Alert.objects.filter(kind="TREASURY_TRANSFER_PROPOSED", resolved_at__isnull=True).count() == 0
    run(evm_adapter, evm_node)
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.CONFIRMED
    assert evm_adapter.balance(cold.address, contract=usdt) == cold_before + 400 * 10**6
    assert evm_adapter.balance(hot.address, contract=usdt) == 600 * 10**6
    receipt = evm_node.w3.eth.get_transaction_receipt(transfer.tx_hash)
    fee_wei = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    (flow,) = HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE)
    assert (flow.account, flow.coin_id, flow.amount) == (HouseAccount.NETWORK_FEES, "ETH", -Decimal(fee_wei) / ONE_ETH)
    actions = list(transfer.logs.order_by("id").values_list("action", flat=True))
    assert actions == ["plan", "approve", "sign", "broadcast", "confirm"]
    # Confirming again books nothing twice; the balance read later proposes nothing more.
    run(evm_adapter, evm_node)
    refresh(evm_adapter)
    assert treasury_services.treasury_plan(chain_id="ETH").proposed == 0
    assert HouseFlow.objects.count() == 1


def test_a_rejected_transfer_sends_nothing_and_is_not_proposed_again_at_once(hot, cold, evm_node, evm_adapter):
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=hot, coin_id="ETH", low=None, high="4", proposer=alice, approver=bob)
    refresh(evm_adapter)
    treasury_services.treasury_plan(chain_id="ETH")
    transfer = TreasuryTransfer.objects.get()

    treasury_services.treasury_transfer_reject(transfer_id=transfer.id, user=bob, remark="not today")

    run(evm_adapter, evm_node)
    transfer.refresh_from_db()
    assert (transfer.status, transfer.tx_hash) == (TransferStatus.REJECTED, None)
    refresh(evm_adapter)
    assert treasury_services.treasury_plan(chain_id="ETH").proposed == 0


def test_auto_send_coins_are_sent_without_approval(hot, cold, evm_node, evm_adapter, settings):
    settings.TREASURY_AUTO_SEND_COINS = ["ETH"]
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=hot, coin_id="ETH", low=None, high="4", proposer=alice, approver=bob)
    cold_before = evm_adapter.balance(cold.address)
    refresh(evm_adapter)

    assert treasury_services.treasury_plan(chain_id="ETH").approved == 1
    run(evm_adapter, evm_node)

    transfer = TreasuryTransfer.objects.get()
    assert transfer.status == TransferStatus.CONFIRMED
    assert evm_adapter.balance(cold.address) == cold_before + 6 * ONE_ETH
    assert not Alert.objects.filter(kind="TREASURY_TRANSFER_PROPOSED").exists()


def test_a_transfer_from_cold_to_hot_is_credited_to_no_user(hot, cold, evm_node, evm_adapter, user, settings):
    from django.utils import timezone

    from addresses import signer
    from addresses.models import AddressType

    settings.SCAN_START_HEIGHTS = {"ETH": 0}
    signer.hd_wallet_create(
        chain_id="ETH", purpose=AddressType.USER_DEPOSIT, mnemonic=signer.mnemonic_generate(), label="test-only"
    )
    deposit = addresses_services.deposit_address_assign(user=user, coin_id="ETH")
    evm_node.send_tx({"to": deposit.address, "value": ONE_ETH}, sender=6)  # a real deposit, to compare
    evm_node.send_tx({"to": hot.address, "value": 2 * ONE_ETH}, sender=5)  # cold → hot
    usdt = evm_node.contract(evm_node.contracts["USDT"])
    evm_node.transact(usdt.functions.transfer(cold.address, 50 * 10**6))
    evm_node.transact(usdt.functions.transfer(hot.address, 50 * 10**6), sender=5)  # cold → hot, a token
    evm_node.mine(3)

    tick(evm_adapter, timezone.now(), chain_id="ETH")

    assert list(RechargeRecord.objects.values_list("to_address", flat=True)) == [deposit.address]
