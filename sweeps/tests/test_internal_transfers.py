"""
A sweep's own transactions seen by the deposit scanner: a gas top-up from the gas station to a
user's deposit address is the exchange paying its own gas, never the user's deposit. On a real
EVM dev node (ganache) and MariaDB; every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from assets import selectors as assets_selectors
from assets.models import Balance
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from recharges.models import RechargeRecord
from recharges.tests.helpers import tick
from sweeps.models import SweepJob, SweepStatus
from sweeps.tests.conftest import deposit_addresses
from sweeps.tests.test_evm import USDT, deposits_make, eth_setup, sweep_until_settled  # noqa: F401

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def test_a_gas_top_up_to_a_deposit_address_is_not_credited_to_its_user(eth_setup, evm_node, evm_adapter):
    # Any ether counts as a deposit: the top-up (a fraction of a milli-ether) would be credited.
    CoinConfig.objects.filter(coin_id="ETH").update(min_recharge_amount=Decimal("0.000000000000000001"))
    addresses = deposit_addresses("ETH", 1, prefix="topped")
    deposits_make(evm_node, evm_adapter, addresses, eth={}, usdt={0: 500 * USDT})
    users_before = dict(Balance.objects.values_list("id", "available"))
    credited_before = set(RechargeRecord.objects.values_list("tx_hash", flat=True))

    sweep_until_settled(evm_node, evm_adapter)
    (job,) = SweepJob.objects.filter(coin_id="USDT-ERC20")
    assert job.status == SweepStatus.CONFIRMED and job.topup_tx_hash
    # The scanner reads the blocks holding the top-up and the sweep, past their confirmations.
    now = timezone.now()
    tick(evm_adapter, now)
    evm_node.mine(3)
    tick(evm_adapter, now)

    new = RechargeRecord.objects.exclude(tx_hash__in=credited_before)
    assert list(new.values_list("tx_hash", "coin_id", "amount")) == []
    assert dict(Balance.objects.values_list("id", "available")) == users_before
    assert assets_selectors.ledger_mismatches() == []
