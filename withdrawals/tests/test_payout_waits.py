"""Approved withdrawals that cannot be paid now wait, alerted once, without stopping the others.

A reorg hold, a switched-off coin or a hot wallet short of the amount leaves the withdrawal
approved and unsigned (no nonce taken), and the run goes on to the next one; a node that is down
stops the run of its chain. Against a real EVM dev node (ganache); MariaDB where the payout's own
transactions must really commit. Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from eth_account import Account

from assets import selectors as assets_selectors
from chains.devnodes import free_port
from chains.evm import EvmAdapter
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig, Switch
from monitoring.models import Alert
from recharges import shortfalls as recharges_shortfalls
from recharges import watchlist
from recharges.models import AccountHold, HoldStatus
from recharges.tests.conftest import deposit_address
from recharges.tests.helpers import available, tick
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, _hot_address, approved, hot, nonce, signed_tx  # noqa: F401

USDT = 10**6


@pytest.fixture(autouse=True)
def _no_fault():
    withdrawals_payout.fault_hook = None
    watchlist.watchlist_reset()
    yield
    withdrawals_payout.fault_hook = None
    watchlist.watchlist_reset()


def _pay(adapter):
    return withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=adapter)


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_held_by_a_reorg_after_its_approval_waits_unsigned_until_the_hold_is_lifted(
    monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    hot_row = _hot_address(monkeypatch, settings, tmp_path, evm_node)
    owner = get_user_model().objects.create_user("held-owner")
    settings.SCAN_START_HEIGHTS = {"ETH": evm_adapter.tip_height() + 1}
    deposit = deposit_address(user=owner, address=Account.create().address)  # TEST-ONLY
    fork = evm_node.snapshot()
    evm_node.send_tx({"to": deposit.address, "value": 4 * ONE_ETH})
    evm_node.mine(1)
    tick(evm_adapter, timezone.now())
    assert available(owner, "ETH") == Decimal(4)
    to = Account.create().address  # TEST-ONLY
    record = withdrawals_services.withdrawal_apply(
        user_id=owner.id, coin_id="ETH", to_address=to, amount="4", idempotency_key="held"
    )
    assert record.status == WithdrawStatus.APPROVED
    evm_node.revert(fork)
    evm_node.mine(4)  # a longer branch without the deposit: the 4 ETH credited cannot be taken back
    tick(evm_adapter, timezone.now())
    hold = AccountHold.objects.get(user=owner, status=HoldStatus.ACTIVE)
    assert hold.shortfall == Decimal(4)

    first = _pay(evm_adapter)
    second = _pay(evm_adapter)

    record.refresh_from_db()
    assert (first.signed, second.signed, second.waiting) == (0, 0, 1)
    assert (record.status, signed_tx(record), record.tx_hash) == (WithdrawStatus.APPROVED, None, None)
    assert evm_adapter.balance(to) == 0
    assert not NonceCursor.objects.filter(address=hot_row.address, next_nonce__gt=0).exists()
    alert = Alert.objects.get(kind="WITHDRAW_HELD")  # one alert, seen twice
    assert (alert.subject, alert.count) == (f"withdrawal {record.withdraw_no}", 2)
    assert "hold" in alert.message

    recharges_shortfalls.account_hold_settle(
        hold_id=hold.id, operator=_operator(), remark="the user paid the shortfall back", now=timezone.now()
    )
    paid = _pay(evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (paid.signed, record.status) == (1, WithdrawStatus.COMPLETED)
    assert evm_adapter.balance(to) == int(Decimal("3.997") * ONE_ETH)


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_the_hot_wallet_cannot_pay_waits_and_the_later_payouts_of_its_chain_go_on(
    monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    hot_row = _hot_address(monkeypatch, settings, tmp_path, evm_node)  # 10 ETH, 1,000 USDT
    users = get_user_model().objects
    big, big_to = approved(users.create_user("whale"), "2000", coin_id="USDT-ERC20", key="big", fund="2000")
    small, small_to = approved(users.create_user("minnow"), "1", key="small")

    first = _pay(evm_adapter)
    second = _pay(evm_adapter)

    big.refresh_from_db()
    small.refresh_from_db()
    assert (first.signed, first.waiting, first.error, second.signed) == (1, 1, None, 0)
    assert (big.status, signed_tx(big)) == (WithdrawStatus.APPROVED, None)
    # The refused signing came first and allocated nonce 0; it rolled back, so the payout took it.
    assert (small.status, nonce(small)) == (WithdrawStatus.PROCESSING, 0)
    assert NonceCursor.objects.get(address=hot_row.address).next_nonce == 1
    alert = Alert.objects.get(kind="WITHDRAW_HOT_WALLET_SHORT")
    assert (alert.subject, alert.count) == (f"withdrawal {big.withdraw_no}", 2)
    assert hot_row.address in alert.message
    assert "holds 1000 USDT-ERC20" in alert.message and "995 USDT-ERC20 short" in alert.message

    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    usdt = evm_node.contract(evm_node.contracts["USDT"])
    evm_node.transact(usdt.functions.transfer(hot_row.address, 1000 * USDT))  # ops top the hot wallet up
    paid = _pay(evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    big.refresh_from_db()
    small.refresh_from_db()
    assert (small.status, big.status, paid.signed, nonce(big)) == (WithdrawStatus.COMPLETED,) * 2 + (1, 1)
    assert evm_adapter.balance(small_to) == int(Decimal("0.997") * ONE_ETH)
    assert evm_adapter.balance(big_to, contract=evm_node.contracts["USDT"]) == 1995 * USDT
    assert assets_selectors.ledger_mismatches() == []


def test_a_node_that_is_down_stops_the_run_of_its_chain_instead_of_failing_each_withdrawal(hot, user):
    first, _ = approved(user, "1", key="a")
    second, _ = approved(user, "1", key="b")
    down = EvmAdapter(url=f"http://127.0.0.1:{free_port()}", connect_timeout=0.5, read_timeout=1)

    result = _pay(down)

    assert result.signed == 0 and "ChainError" in result.error
    assert Alert.objects.get(kind="NODE_DOWN").subject == "chain ETH"
    assert not Alert.objects.filter(subject__startswith="withdrawal ").exists()  # not tried one by one
    assert set(Alert.objects.values_list("kind", flat=True)) == {"NODE_DOWN"}
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == (WithdrawStatus.APPROVED, WithdrawStatus.APPROVED)


def test_an_approved_withdrawal_of_a_coin_switched_off_waits_unsigned_until_it_is_on_again(
    hot, user, evm_node, evm_adapter
):
    record, _ = approved(user, "1")
    CoinConfig.objects.filter(coin_id="ETH").update(withdraw_enabled=Switch.DISABLED)

    withdrawals_off = _pay(evm_adapter)
    CoinConfig.objects.filter(coin_id="ETH").update(withdraw_enabled=Switch.ENABLED, status=Switch.DISABLED)
    coin_off = _pay(evm_adapter)
    record.refresh_from_db()
    assert (withdrawals_off.signed, coin_off.signed, coin_off.waiting) == (0, 0, 1)
    assert (record.status, signed_tx(record)) == (WithdrawStatus.APPROVED, None)
    assert not NonceCursor.objects.filter(address=hot.address, next_nonce__gt=0).exists()

    CoinConfig.objects.filter(coin_id="ETH").update(status=Switch.ENABLED)
    on = _pay(evm_adapter)

    record.refresh_from_db()
    assert (on.signed, record.status) == (1, WithdrawStatus.PROCESSING)


def _operator():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("ops-settler", is_staff=True)
