"""
The sweep worker killed with SIGKILL mid-way (after a top-up was sent, after a sweep was signed,
after one was broadcast) and restarted, on 50 addresses: every address ends empty but dust, nothing
is sent twice, the gas spent is booked exactly. The worker is a real child process
(sweeps.tests.sweep_worker) that dies without unwinding: the server rolls back its open transaction
when the connection drops, and what it sent to the node stays sent. Against ganache and MariaDB.
Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest

from assets import selectors as assets_selectors
from assets.models import Balance, BusinessType, HouseFlow
from chains.testing import evm_adapter, evm_node  # noqa: F401
from sweeps.models import SweepJob, SweepStatus
from sweeps.tests.conftest import deposit_addresses, house_network_fees
from sweeps.tests.test_evm import ONE_ETH, USDT, deposits_make, eth_setup, fees_on_chain, sweep_until_settled  # noqa: F401
from wallet_project.testing import worker_run


def _worker(step: str, evm_node) -> subprocess.CompletedProcess[bytes]:
    return worker_run("sweeps.tests.sweep_worker", step, env={"ETH_RPC_URL": evm_node.url}, timeout=300)


@pytest.mark.mysql
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_sweep_worker_killed_mid_way_then_restarted_empties_every_address_once(
    eth_setup, evm_node, evm_adapter, settings
):
    hot, station = eth_setup
    addresses = deposit_addresses("ETH", 50, prefix="killed")
    eth = {i: ONE_ETH // 4 + i for i in range(20)}
    usdt = {i: (10 + i) * USDT for i in range(50)}
    deposits_make(evm_node, evm_adapter, addresses, eth=eth, usdt=usdt)
    users_before = dict(Balance.objects.values_list("id", "available"))

    # Killed after broadcasting an ether sweep, then after sending a gas top-up, then after signing
    # a token sweep: each time a restarted worker picks up where the last one died.
    for step in ("sweep.sent", "topup.sent", "sweep.signed"):
        killed = _worker(step, evm_node)
        assert killed.returncode == -9, killed.stderr.decode()[-2000:]  # it really died at that step
    # The restarted worker resends the stored gas top-ups, all from the gas station. This ganache
    # answers eth_sendRawTransaction only once a transaction is mined (eager instamine), so a top-up
    # whose lower nonce another thread has not sent yet holds its thread until the read timeout;
    # a node with a transaction pool (geth) queues it. One thread resends them in order.
    settings.SWEEP_WORKERS = 1
    sweep_until_settled(evm_node, evm_adapter)  # the restarted worker, until every job has ended

    jobs = list(SweepJob.objects.order_by("id"))
    assert {job.status for job in jobs} == {SweepStatus.CONFIRMED}
    assert len([j for j in jobs if j.coin_id == "ETH"]) == 20 and len([j for j in jobs if j.coin_id != "ETH"]) == 50
    for address in addresses:
        assert evm_adapter.balance(address.address, contract=evm_node.contracts["USDT"]) == 0
        (token_job,) = [j for j in jobs if j.from_address == address.address and j.coin_id != "ETH"]
        assert evm_adapter.balance(address.address) <= token_job.gas_limit * token_job.max_fee_per_gas * 2  # dust
        assert evm_adapter.mined_count(address.address) == (2 if address in addresses[:20] else 1)  # none twice
    assert evm_adapter.mined_count(station.address) == 50
    assert evm_adapter.balance(hot.address, contract=evm_node.contracts["USDT"]) == sum(usdt.values())
    assert house_network_fees("ETH") == -Decimal(fees_on_chain(evm_adapter, jobs)) / ONE_ETH
    assert HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE).count() == 20 + 50 + 50
    assert dict(Balance.objects.values_list("id", "available")) == users_before
    assert assets_selectors.ledger_mismatches() == []
