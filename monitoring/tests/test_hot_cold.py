"""
A hot address below its minimum raises one HOT_BALANCE_LOW alert asking ops to top it up from
cold, resolved by itself once a transfer from cold brings it back (ganache; TEST-ONLY keys).
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import pytest

from addresses import services as addresses_services
from chains.testing import evm_adapter, evm_node  # noqa: F401
from monitoring import balances as monitoring_balances
from monitoring import checks as monitoring_checks
from monitoring.models import Alert
from treasury.tests.helpers import limits_set, operator
from withdrawals.tests.test_onchain import ONE_ETH, _hot_address

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hot(db, monkeypatch, settings, tmp_path, evm_node):
    settings.HOT_BALANCE_CHAINS = ["ETH"]
    settings.TREASURY_CHAINS = ["ETH"]
    return _hot_address(monkeypatch, settings, tmp_path, evm_node)  # 10 ETH, 1000 USDT


@pytest.fixture
def cold(hot, evm_node):
    return addresses_services.cold_address_add(chain_id="ETH", address=evm_node.accounts[5].address)


def refresh(adapter) -> None:
    monitoring_balances.hot_balances_refresh(adapters={"ETH": adapter})


def test_below_the_minimum_raises_one_alert_that_resolves_when_cold_tops_it_up(hot, cold, evm_node, evm_adapter):
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=hot, coin_id="ETH", low="15", high=None, proposer=alice, approver=bob)
    refresh(evm_adapter)

    monitoring_checks.monitoring_check()
    monitoring_checks.monitoring_check()

    (alert,) = Alert.objects.filter(kind="HOT_BALANCE_LOW")
    assert alert.subject == f"ETH {hot.address}" and alert.resolved_at is None
    assert "top it up from cold" in alert.message
    # Ops top the hot address up from cold (by hand, with the cold key): the alert resolves itself.
    evm_node.send_tx({"to": hot.address, "value": 6 * ONE_ETH}, sender=5)
    refresh(evm_adapter)
    monitoring_checks.monitoring_check()
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert Alert.objects.filter(kind="HOT_BALANCE_LOW").count() == 1
