"""
A transfer to cold never takes what approved withdrawals waiting for their payout need: on the EVM
dev node (ganache) and MariaDB. Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - fixtures imported from other test modules are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from addresses import services as addresses_services
from addresses.models import AddressStatus
from assets import services as assets_services
from assets.models import BusinessType
from coins.models import CoinConfig
from treasury import services as treasury_services
from treasury.models import TransferStatus, TreasuryTransfer
from treasury.tests.helpers import limits_set, operator
from treasury.tests.test_cold_evm import _no_fault, cold, hot, refresh, run  # noqa: F401
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus
from withdrawals.tests.test_onchain import approved

pytestmark = pytest.mark.django_db(transaction=True)

USDT = 10**6


def _approved_by_auditors(user, amount: str, *, auditors) -> WithdrawRecord:
    coin = CoinConfig.objects.get(coin_id="USDT-ERC20")
    assets_services.balance_credit(
        user_id=user.id, coin=coin, amount=Decimal(1000), business_type=BusinessType.RECHARGE, biz_ref="fund-late"
    )
    record = withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id=coin.coin_id, to_address=Account.create().address, amount=amount, idempotency_key="w"
    )
    for auditor in auditors:
        if record.status == WithdrawStatus.APPROVED:
            break
        record = withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id, remark="ok")
    assert record.status == WithdrawStatus.APPROVED
    return record


def test_the_surplus_sent_to_cold_leaves_what_approved_withdrawals_need(hot, cold, user, evm_node, evm_adapter):
    alice, bob = operator("ops-one"), operator("ops-two")
    limits_set(address=hot, coin_id="USDT-ERC20", low="100", high="600", proposer=alice, approver=bob)
    # Approved, not paid yet (the payout run has not come): the hot address is to pay 700 of its 1,000.
    record, _to = approved(user, "700", coin_id="USDT-ERC20", fund="1000")
    refresh(evm_adapter)

    if treasury_services.treasury_plan(chain_id="ETH").proposed:
        transfer = TreasuryTransfer.objects.get()
        treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=alice, remark="policy")
        run(evm_adapter, evm_node)

    usdt = evm_node.contracts["USDT"]
    sent = sum(t.amount for t in TreasuryTransfer.objects.filter(status=TransferStatus.CONFIRMED))
    assert sent == 0, f"{sent} USDT went to cold"
    assert evm_adapter.balance(hot.address, contract=usdt) == 1000 * USDT
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    assert paid.signed == 1
    record.refresh_from_db()
    assert record.status == WithdrawStatus.PROCESSING


def test_a_transfer_approved_before_a_withdrawal_was_is_not_signed_over_it(hot, cold, user, evm_node, evm_adapter):
    alice, bob = operator("ops-one"), operator("ops-two")
    limits_set(address=hot, coin_id="USDT-ERC20", low="100", high="600", proposer=alice, approver=bob)
    refresh(evm_adapter)
    assert treasury_services.treasury_plan(chain_id="ETH").proposed == 1
    transfer = TreasuryTransfer.objects.get()
    treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=alice, remark="policy")
    # Approved after the transfer was (by auditors when a risk rule held it), not paid before the transfer's run.
    record = _approved_by_auditors(user, "700", auditors=(alice, bob))

    run(evm_adapter, evm_node)

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.FAILED
    assert evm_adapter.balance(hot.address, contract=evm_node.contracts["USDT"]) == 1000 * USDT
    assert withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter).signed == 1
    record.refresh_from_db()
    assert record.status == WithdrawStatus.PROCESSING


def test_an_approved_transfer_to_a_cold_address_disabled_since_is_not_sent(hot, cold, evm_node, evm_adapter):
    alice, bob = operator("ops-one"), operator("ops-two")
    limits_set(address=hot, coin_id="USDT-ERC20", low="100", high="600", proposer=alice, approver=bob)
    refresh(evm_adapter)
    assert treasury_services.treasury_plan(chain_id="ETH").proposed == 1
    transfer = TreasuryTransfer.objects.get()
    treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=alice, remark="policy")
    # Ops learn the cold wallet's key may be exposed and disable the address before the next run.
    addresses_services.address_status_set(
        address_id=cold.id, status=AddressStatus.DISABLED, operator_id=bob.id, remark="cold key exposed"
    )
    usdt = evm_node.contracts["USDT"]
    cold_before = evm_adapter.balance(cold.address, contract=usdt)

    run(evm_adapter, evm_node)

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.FAILED
    assert evm_adapter.balance(cold.address, contract=usdt) == cold_before
