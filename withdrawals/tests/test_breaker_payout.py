"""
The circuit breaker against a real EVM dev node (ganache): a tripped coin's withdrawals wait
unsigned while the chain's other coins are paid, the user sees why, and clearing it takes a
second person. Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from chains.testing import evm_adapter, evm_node  # noqa: F401
from controls import breakers, proposals
from controls import services as controls_services
from controls.models import BreakerSource, ChangeStatus
from monitoring.models import Alert, Severity
from wallet_project import roles
from wallet_project.errors import Conflict
from withdrawals import payout as withdrawals_payout
from withdrawals.models import PayoutWithdrawal, WithdrawStatus
from withdrawals.tests.test_onchain import _no_fault, approved, hot  # noqa: F401

pytestmark = pytest.mark.usefixtures("_no_fault")


def operator(name: str):
    person = get_user_model().objects.create_user(name, password=f"pw-{name}-1", is_staff=True)
    person.groups.add(Group.objects.get(name=roles.OPERATORS))
    return get_user_model().objects.get(pk=person.pk)


@pytest.fixture
def anna(staff_roles):
    return operator("ops-anna")


@pytest.fixture
def carl(staff_roles):
    return operator("ops-carl")


def test_a_tripped_breaker_stops_payouts_of_its_coin_only(hot, user, anna, evm_node, evm_adapter):
    eth, _ = approved(user, "1", key="eth")
    usdt, usdt_to = approved(user, "25", coin_id="USDT-ERC20", key="usdt")
    breakers.breaker_trip(coin_id="ETH", reason="ledger and chain differ", source=BreakerSource.OPS, user=anna)

    result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    eth.refresh_from_db()
    usdt.refresh_from_db()
    assert (result.signed, result.waiting) == (1, 1)
    assert "the circuit breaker of ETH is tripped" in result.waits[0]
    assert (eth.status, PayoutWithdrawal.objects.filter(withdraw=eth).exists()) == (WithdrawStatus.APPROVED, False)
    assert usdt.status == WithdrawStatus.COMPLETED and usdt.payout_link.payout.nonce == 0
    assert evm_adapter.balance(usdt_to, contract=evm_node.contracts["USDT"]) == 20 * 10**6
    (alert,) = Alert.objects.all()  # the trip's own; nothing per waiting withdrawal
    assert (alert.kind, alert.severity, alert.subject) == ("BREAKER_TRIPPED", Severity.CRITICAL, "coin ETH")
    assert "ops-anna" in alert.message and "ledger and chain differ" in alert.message


def test_the_user_sees_that_payouts_of_the_coin_are_paused(hot, user, evm_adapter):
    record, _ = approved(user, "1")
    breakers.breaker_trip(coin_id="ETH", reason="reconciliation mismatch", source=BreakerSource.RECONCILIATION)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")

    shown = client.get(f"/api/v1/wallet/withdrawals/{record.withdraw_no}").json()

    assert shown["status_name"] == "APPROVED"
    assert shown["waiting_reason"] == (
        "Payouts of ETH are paused for a safety check; your withdrawal is approved and will be sent when they resume."
    )


def test_clearing_takes_a_second_person_and_nothing_is_paid_before(hot, user, anna, carl, evm_node, evm_adapter):
    record, _ = approved(user, "1")
    breakers.breaker_trip(coin_id="ETH", reason="nonce taken by a transaction we did not sign", source="PAYOUT")
    change = breakers.breaker_clear_propose(coin_id="ETH", user=anna, remark="key rotated, nonce explained")

    with pytest.raises(Conflict) as own:
        proposals.change_approve(change_id=change.id, user=anna)
    waiting = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    proposals.change_approve(change_id=change.id, user=carl, remark="checked the explorer")
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    assert own.value.code == "own_proposal"
    assert (waiting.signed, paid.signed) == (0, 1)
    record.refresh_from_db()
    change.refresh_from_db()
    assert record.status == WithdrawStatus.COMPLETED
    assert (change.status, change.proposed_by, change.decided_by) == (ChangeStatus.APPLIED, anna, carl)
    assert Alert.objects.get(kind="BREAKER_TRIPPED").resolved_at is not None


def test_an_approved_withdrawal_to_an_address_blacklisted_since_waits_unsigned_with_an_alert(
    hot, user, anna, carl, evm_adapter
):
    record, to = approved(user, "1")
    entries = [controls_services.blacklist_entry_check(chain_id="ETH", address=to, reason="stolen funds")]
    change = controls_services.blacklist_propose_add(entries=entries, user=anna, reason="case 12")
    proposals.change_approve(change_id=change.id, user=carl)

    result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (result.signed, record.status) == (0, WithdrawStatus.APPROVED)
    assert not PayoutWithdrawal.objects.filter(withdraw=record).exists()
    alert = Alert.objects.get(kind="ABNORMAL_TRANSACTION", subject=f"withdrawal {record.withdraw_no}")
    assert "risk rule blacklist refuses it now" in alert.message
