"""Hot balance and stuck payout alerts against a real EVM dev node (ganache); TEST-ONLY keys throughout."""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from eth_account import Account
from prometheus_client import REGISTRY

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType, WalletAddress
from assets import services as assets_services
from assets.models import BusinessType
from chains.evm import EvmAdapter
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from monitoring import balances, checks
from monitoring.models import Alert, HotBalance
from monitoring.tests.conftest import TEST_MNEMONIC
from treasury.models import HotThreshold
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawStatus

pytestmark = pytest.mark.django_db(transaction=True)

ONE_ETH = 10**18


@pytest.fixture
def hot(test_kek, settings, evm_node) -> WalletAddress:
    """A hot address of the withdraw pool holding 10 ETH and 1,000 test USDT."""
    settings.HOT_BALANCE_CHAINS = ["ETH"]
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=evm_node.contracts["USDT"])
    signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC, label="test-only")
    (row,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=1)
    have = evm_node.w3.eth.get_balance(row.address)
    if have < 10 * ONE_ETH:
        evm_node.send_tx({"to": row.address, "value": 10 * ONE_ETH - have})
    usdt = evm_node.contract(evm_node.contracts["USDT"])
    held = usdt.functions.balanceOf(row.address).call()
    if held < 1000 * 10**6:
        evm_node.transact(usdt.functions.transfer(row.address, 1000 * 10**6 - held))
    return row


def limits(hot: WalletAddress, coin_id: str, low: str | None, high: str | None) -> None:
    """The hot address's limits for a coin (in service they change by four eyes: treasury.thresholds)."""
    HotThreshold.objects.update_or_create(
        address=hot,
        coin_id=coin_id,
        defaults={"min_balance": low and Decimal(low), "max_balance": high and Decimal(high)},
    )


def open_alert(kind: str) -> Alert | None:
    return Alert.objects.filter(kind=kind, resolved_at__isnull=True).order_by("id").first()


def test_hot_balances_are_read_from_the_chain_and_alert_below_the_minimum_and_above_the_maximum(
    hot, settings, evm_adapter, channels
):
    limits(hot, "ETH", "20", None)
    limits(hot, "USDT-ERC20", None, "500")

    balances.hot_balances_refresh(adapters={"ETH": evm_adapter})
    checks.monitoring_check()
    checks.monitoring_check()

    readings = {r.coin_id: r.balance for r in HotBalance.objects.all()}
    assert readings == {"ETH": Decimal(10), "USDT-ERC20": Decimal(1000)}
    low, high = open_alert("HOT_BALANCE_LOW"), open_alert("HOT_BALANCE_HIGH")
    assert (low.subject, low.count) == (f"ETH {hot.address}", 2)
    assert low.message == "holds 10 ETH, below its minimum 20: top it up from cold"
    assert (high.subject, high.count) == (f"USDT-ERC20 {hot.address}", 2)
    assert Alert.objects.filter(kind__startswith="HOT_BALANCE").count() == 2

    # The node cannot be read: the balance is unknown, so nothing clears, whatever the limits say.
    limits(hot, "ETH", "5", None)
    balances.hot_balances_refresh(adapters={"ETH": EvmAdapter(url="http://127.0.0.1:9/", connect_timeout=1)})
    checks.monitoring_check()
    assert HotBalance.objects.get(coin_id="ETH").balance is None
    assert open_alert("HOT_BALANCE_LOW") is not None

    balances.hot_balances_refresh(adapters={"ETH": evm_adapter})
    limits(hot, "USDT-ERC20", None, "2000")
    checks.monitoring_check()

    low.refresh_from_db()
    high.refresh_from_db()
    assert low.resolved_how == "the balance is back at or above the minimum"
    assert high.resolved_how == "the balance is back at or below the maximum"
    assert REGISTRY.get_sample_value(
        "wallet_hot_balance", {"chain": "ETH", "coin": "USDT-ERC20", "address": hot.address}
    ) == pytest.approx(1000)


def test_a_stuck_payout_that_cannot_be_replaced_is_alerted_once_and_resolved_when_it_completes(
    hot, user, settings, evm_node, evm_adapter
):
    settings.WITHDRAW_STUCK_SECONDS = 60
    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id="ETH"),
        amount=Decimal(5),
        business_type=BusinessType.RECHARGE,
        biz_ref="fund",
    )
    record = withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id="ETH", to_address=Account.create().address, amount="1", idempotency_key="k1"
    )
    t0 = timezone.now()
    evm_node.w3.provider.make_request("miner_stop", [])
    try:
        # A stuck EVM payout is replaced (same nonce, higher fee) and only alerted as stuck when it
        # cannot be: here its max fee is the ceiling already (no block comes to change the base fee).
        market = evm_adapter.fee_market()
        priority = min(
            max(market.priority_fee, settings.ETH_PRIORITY_FEE_FLOOR_WEI), settings.ETH_PRIORITY_FEE_CEILING_WEI
        )
        settings.ETH_MAX_FEE_PER_GAS_CEILING_WEI = market.base_fee + priority
        withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter, now=t0)
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter, now=t0 + timedelta(seconds=30))
        assert open_alert("WITHDRAW_STUCK") is None
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter, now=t0 + timedelta(seconds=61))
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter, now=t0 + timedelta(seconds=120))
        checks.monitoring_check()
    finally:
        evm_node.w3.provider.make_request("miner_start", [])
    stuck = open_alert("WITHDRAW_STUCK")
    assert (stuck.subject, stuck.count) == (f"withdrawal {record.withdraw_no}", 2)
    assert "cannot be replaced" in stuck.message

    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    checks.monitoring_check()

    record.refresh_from_db()
    stuck.refresh_from_db()
    assert record.status == WithdrawStatus.COMPLETED
    assert stuck.resolved_how == "the withdrawal is completed"
    assert REGISTRY.get_sample_value("wallet_payouts", {"chain": "ETH", "status": "completed"}) == 1
    assert REGISTRY.get_sample_value("wallet_withdrawal_processing_seconds_gcount") == 1
