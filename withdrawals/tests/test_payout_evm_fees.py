"""EVM payouts: EIP-1559 fees within a ceiling, estimated gas (contract wallets), the token's Transfer
log checked before a payout counts as paid. Against ganache; every key is a TEST-ONLY key."""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest

from assets import selectors as assets_selectors
from assets.models import Balance
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from monitoring.models import Alert
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import PayoutTx, WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, approved, hot  # noqa: F401

GWEI = 10**9


@pytest.fixture(autouse=True)
def _no_fault():
    withdrawals_payout.fault_hook = None
    yield
    withdrawals_payout.fault_hook = None


def _pay_and_settle(evm_node, evm_adapter):
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    done = withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    return paid, done


def test_a_payout_to_a_contract_wallet_whose_receive_costs_more_than_21000_gas_completes(
    hot, user, evm_node, evm_adapter
):
    wallet = evm_node.deploy("GasHungryWallet")
    _fund(user, "ETH", "10")
    record = withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id="ETH", to_address=wallet, amount="1", idempotency_key="cw"
    )

    _pay_and_settle(evm_node, evm_adapter)

    record.refresh_from_db()
    assert record.status == WithdrawStatus.COMPLETED
    receipt = evm_node.w3.eth.get_transaction_receipt(record.tx_hash)
    assert receipt["gasUsed"] > 60_000  # far more than a plain transfer's 21,000
    assert evm_adapter.balance(wallet) == int(Decimal("0.997") * ONE_ETH)
    assert evm_node.contract(wallet, "GasHungryWallet").functions.depositCount().call() == 1
    assert assets_selectors.ledger_mismatches() == []


def test_a_token_whose_transfer_returns_false_is_not_paid_and_the_withdrawal_fails_with_an_alert(
    hot, user, evm_node, evm_adapter
):
    token = evm_node.token_deploy(contract="FalseReturningToken")
    contract = evm_node.contract(token, "FalseReturningToken")
    evm_node.transact(contract.functions.mint(hot.address, 10**12))
    evm_node.transact(contract.functions.setTransfersOff(True))  # transfer() now returns false, no revert
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=token)
    record, to = approved(user, "25", coin_id="USDT-ERC20")

    _, done = _pay_and_settle(evm_node, evm_adapter)

    record.refresh_from_db()
    assert evm_node.w3.eth.get_transaction_receipt(record.tx_hash)["status"] == 1  # the node says success
    assert (done.completed, done.failed, record.status) == (0, 1, WithdrawStatus.FAILED)
    assert contract.functions.balanceOf(to).call() == 0
    balance = Balance.objects.get(user=user, coin_id="USDT-ERC20")
    assert (balance.available, balance.frozen) == (Decimal(100), Decimal(0))  # unfrozen
    alert = Alert.objects.get(kind="WITHDRAW_TOKEN_NOT_PAID")
    assert alert.subject == f"withdrawal {record.withdraw_no}" and "no Transfer" in alert.message
    assert assets_selectors.ledger_mismatches() == []


def test_nothing_is_signed_while_the_fee_is_above_the_ceiling_and_it_is_paid_once_under_it(
    hot, user, evm_node, evm_adapter, settings
):
    base_fee = evm_node.w3.eth.get_block("latest")["baseFeePerGas"]
    settings.ETH_MAX_FEE_PER_GAS_CEILING_WEI = base_fee // 2  # the market is above what ops allow
    record, to = approved(user, "1")

    refused = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (refused.signed, refused.waiting, record.status, record.tx_hash) == (0, 1, WithdrawStatus.APPROVED, None)
    assert not NonceCursor.objects.filter(address=hot.address, next_nonce__gt=0).exists()  # no nonce taken
    alert = Alert.objects.get(kind="WITHDRAW_FEE_CEILING")
    assert alert.subject == "chain ETH" and "ETH_MAX_FEE_PER_GAS_CEILING_WEI" in alert.message
    assert evm_adapter.balance(to) == 0

    settings.ETH_MAX_FEE_PER_GAS_CEILING_WEI = 500 * GWEI
    paid, _ = _pay_and_settle(evm_node, evm_adapter)

    record.refresh_from_db()
    assert (paid.signed, record.status) == (1, WithdrawStatus.COMPLETED)
    assert evm_adapter.balance(to) == int(Decimal("0.997") * ONE_ETH)


def _fund(user, coin_id: str, amount: str) -> None:
    from assets import services as assets_services
    from assets.models import BusinessType

    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id=coin_id),
        amount=Decimal(amount),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{coin_id}-{amount}",
    )


def test_payouts_are_eip1559_transactions_with_the_node_s_fees_and_estimated_gas(hot, user, evm_node, evm_adapter):
    eth, _ = approved(user, "1", key="eth")
    usdt, _ = approved(user, "25", coin_id="USDT-ERC20", key="usdt")
    market = evm_adapter.fee_market()
    estimate = evm_adapter.estimate_gas(
        from_address=hot.address, to_address=evm_node.contracts["USDT"], data=_data(usdt)
    )

    _pay_and_settle(evm_node, evm_adapter)

    eth_tx = PayoutTx.objects.get(payout__links__withdraw=eth)
    usdt_tx = PayoutTx.objects.get(payout__links__withdraw=usdt)
    assert eth_tx.raw.startswith("0x02") and usdt_tx.raw.startswith("0x02")  # type 2
    assert eth_tx.gas_price is None and eth_tx.max_priority_fee_per_gas == GWEI  # ganache suggests 1 gwei
    assert eth_tx.max_fee_per_gas == 2 * market.base_fee + GWEI  # base fee x 2 + priority fee
    assert eth_tx.gas_limit == 21_000  # a plain transfer to an address without code
    assert estimate > 21_000 and usdt_tx.gas_limit == -(-estimate * 5 // 4)  # the estimate x 1.25, rounded up
    assert (
        eth_tx.fee
        == Decimal(evm_node.w3.eth.get_transaction_receipt(eth_tx.tx_hash)["gasUsed"])
        * Decimal(evm_node.w3.eth.get_transaction_receipt(eth_tx.tx_hash)["effectiveGasPrice"])
        / ONE_ETH
    )
    eth.refresh_from_db()
    usdt.refresh_from_db()
    assert (eth.status, usdt.status) == (WithdrawStatus.COMPLETED, WithdrawStatus.COMPLETED)


def _data(record) -> str:
    to = record.to_address.lower()[2:].rjust(64, "0")
    return "0xa9059cbb" + to + format(int(record.actual_amount * 10**6), "064x")


@pytest.fixture(scope="module")
def legacy_node():
    """ganache on berlin: blocks without a base fee, a chain that knows no EIP-1559."""
    from chains.devnodes import evm_start

    node = evm_start(hardfork="berlin")
    try:
        node.contracts["USDT"] = node.token_deploy()
        yield node
    finally:
        node.stop()


def test_on_a_chain_without_a_base_fee_payouts_are_legacy_transactions(
    db, user, monkeypatch, settings, tmp_path, legacy_node
):
    from chains.evm import EvmAdapter
    from withdrawals.tests.test_onchain import _hot_address

    _hot_address(monkeypatch, settings, tmp_path, legacy_node)
    adapter = EvmAdapter(url=legacy_node.url, connect_timeout=1, read_timeout=10)
    record, to = approved(user, "1")

    _pay_and_settle(legacy_node, adapter)

    tx = PayoutTx.objects.get(payout__links__withdraw=record)
    record.refresh_from_db()
    assert adapter.fee_market().base_fee is None
    assert not tx.raw.startswith("0x02") and tx.max_fee_per_gas is None
    assert tx.gas_price == int(legacy_node.w3.provider.make_request("eth_gasPrice", [])["result"], 16)
    assert record.status == WithdrawStatus.COMPLETED
    assert adapter.balance(to) == int(Decimal("0.997") * ONE_ETH)
