"""
ETH and USDT-ERC20 sweeps on a real EVM dev node (ganache) and MariaDB: deposits credited by the
scanner, swept into the hot address with gas top-ups from the gas station, fees booked exactly.
Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from assets import selectors as assets_selectors
from assets.models import Balance, BusinessType, HouseFlow
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from recharges.tests.helpers import tick
from sweeps import common as sweeps_common
from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepStatus
from sweeps.tests.conftest import deposit_addresses, hot_and_station, house_network_fees, seeds_create

ONE_ETH = 10**18
USDT = 10**6

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


@pytest.fixture
def eth_setup(db, vault, settings, evm_node, evm_adapter):
    settings.SCAN_START_HEIGHTS = {"ETH": evm_adapter.tip_height() + 1}
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=evm_node.contracts["USDT"])
    seeds_create("ETH")
    hot, station = hot_and_station("ETH")
    evm_node.send_tx({"to": station.address, "value": 10 * ONE_ETH})
    return hot, station


def deposits_make(evm_node, evm_adapter, addresses, *, eth: dict[int, int], usdt: dict[int, int]) -> None:
    """Send the deposits on chain, then let the scanner find and credit them."""
    token = evm_node.contract(evm_node.contracts["USDT"])
    for i, wei in eth.items():
        evm_node.send_tx({"to": addresses[i].address, "value": wei})
    for i, units in usdt.items():
        evm_node.transact(token.functions.transfer(addresses[i].address, units))
    now = timezone.now()
    tick(evm_adapter, now)
    evm_node.mine(2)
    tick(evm_adapter, now)


def sweep_until_settled(evm_node, evm_adapter, rounds: int = 80) -> list:
    """
    Run the sweeper, a block mined after each run, until it is quiet: no open job and two runs in a
    row that planned nothing (a job that ends lets its address's next coin be planned on the run
    after). `rounds` only bounds a sweeper that never settles: under load a run may move fewer jobs
    on (a node or lock wait), so the test waits on the condition, not on a count of runs.
    """
    runs, quiet = [], 0
    for _ in range(rounds):
        runs.append(sweeps_services.sweeps_run(chain_id="ETH", adapter=evm_adapter))
        evm_node.mine(1)
        busy = runs[-1].planned or SweepJob.objects.filter(open_key__isnull=False).exists()
        quiet = 0 if busy else quiet + 1
        if quiet == 2:
            return runs
    stuck = list(SweepJob.objects.filter(open_key__isnull=False).values_list("job_no", "status", "attempts", "reason"))
    raise AssertionError(f"the sweeper did not settle in {rounds} runs: {stuck}; errors {runs[-1].errors}")


def fees_on_chain(evm_adapter, jobs) -> int:
    """What the jobs' transactions paid, read from their receipts."""
    total = 0
    for job in jobs:
        for tx_hash in (job.tx_hash, job.topup_tx_hash):
            if tx_hash:
                total += evm_adapter.tx_status(tx_hash).fee
    return total


def test_eth_and_usdt_deposits_to_50_addresses_are_swept_into_the_hot_wallet_with_gas_top_ups(
    eth_setup, evm_node, evm_adapter
):
    hot, station = eth_setup
    addresses = deposit_addresses("ETH", 50)
    eth = {i: ONE_ETH // 2 + i for i in range(25)}
    usdt = {i: (100 + i) * USDT for i in range(50)}
    deposits_make(evm_node, evm_adapter, addresses, eth=eth, usdt=usdt)
    station_before = evm_adapter.balance(station.address)
    users_before = dict(Balance.objects.values_list("id", "available"))

    sweep_until_settled(evm_node, evm_adapter)

    jobs = list(SweepJob.objects.order_by("id"))
    assert {job.status for job in jobs} == {SweepStatus.CONFIRMED}
    assert sorted(job.from_address for job in jobs if job.coin_id == "ETH") == sorted(a.address for a in addresses[:25])
    assert sorted(job.from_address for job in jobs if job.coin_id == "USDT-ERC20") == sorted(
        a.address for a in addresses
    )
    token_jobs = {job.from_address: job for job in jobs if job.coin_id == "USDT-ERC20"}
    assert all(job.topup_tx_hash for job in token_jobs.values())  # every token sweep needed its gas topped up
    usdt_contract = evm_node.contracts["USDT"]
    for address in addresses:
        assert evm_adapter.balance(address.address, contract=usdt_contract) == 0
        job = token_jobs[address.address]
        # What is left of ether: the unused part of the top-up, never more than it was sized for.
        left = evm_adapter.balance(address.address)
        sized = int(job.gas_limit * job.max_fee_per_gas * django_settings.SWEEP_TOPUP_MARGIN)
        assert left <= sized
        # Sent once: one transaction per sweep of the address, nonces 0.. in order.
        assert evm_adapter.mined_count(address.address) == (2 if address in addresses[:25] else 1)
    assert evm_adapter.balance(hot.address, contract=usdt_contract) == sum(usdt.values())
    eth_swept = sum(int(job.amount * ONE_ETH) for job in jobs if job.coin_id == "ETH")
    assert evm_adapter.balance(hot.address) == eth_swept
    assert evm_adapter.mined_count(station.address) == 50  # one top-up per token sweep, none twice
    topups = sum(int(job.topup_amount * ONE_ETH) for job in token_jobs.values())
    topup_fees = sum(evm_adapter.tx_status(job.topup_tx_hash).fee for job in token_jobs.values())
    assert station_before - evm_adapter.balance(station.address) == topups + topup_fees
    # The gas spent, booked to the house account exactly: the receipts' fees, once each.
    paid = fees_on_chain(evm_adapter, jobs)
    assert house_network_fees("ETH") == -Decimal(paid) / ONE_ETH
    assert HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE).count() == 25 + 50 + 50
    # Nobody's balance moved.
    assert dict(Balance.objects.values_list("id", "available")) == users_before
    assert assets_selectors.ledger_mismatches() == []


def test_dust_below_the_cost_of_sweeping_stays_on_its_address(eth_setup, evm_node, evm_adapter):
    CoinConfig.objects.filter(coin_id="ETH").update(sweep_threshold=Decimal("0.00000001"))
    (dusty, worth) = deposit_addresses("ETH", 2, prefix="dust")
    deposits_make(evm_node, evm_adapter, [dusty, worth], eth={0: 10_000, 1: ONE_ETH}, usdt={})

    sweep_until_settled(evm_node, evm_adapter)

    assert evm_adapter.balance(dusty.address) == 10_000  # worth less than a transfer's gas: left to grow
    assert evm_adapter.mined_count(dusty.address) == 0
    assert not SweepJob.objects.filter(from_address=dusty.address).exclude(status=SweepStatus.SKIPPED).exists()
    assert SweepJob.objects.get(from_address=worth.address).status == SweepStatus.CONFIRMED


FAULT_STEPS = ["topup.signed", "topup.sent", "sweep.signed", "sweep.sent", "sweep.settled"]


@pytest.mark.parametrize("step", FAULT_STEPS)
def test_a_run_that_crashes_at_any_step_resumes_and_sends_nothing_twice(step, eth_setup, evm_node, evm_adapter):
    _, station = eth_setup
    addresses = deposit_addresses("ETH", 3, prefix=f"crash-{step}")
    deposits_make(evm_node, evm_adapter, addresses, eth={}, usdt={i: 50 * USDT for i in range(3)})
    crashed = []

    def crash(name: str) -> None:
        if name == step and not crashed:
            crashed.append(name)
            raise RuntimeError(f"killed at {name}")

    sweeps_common.fault_hook = crash
    for _ in range(8):
        try:
            sweeps_services.sweeps_run(chain_id="ETH", adapter=evm_adapter)
        except RuntimeError:
            pass
        evm_node.mine(1)
    sweeps_common.fault_hook = None
    sweep_until_settled(evm_node, evm_adapter)

    assert crashed == [step]
    jobs = list(SweepJob.objects.filter(from_address__in=[a.address for a in addresses]))
    assert len(jobs) == 3 and {job.status for job in jobs} == {SweepStatus.CONFIRMED}
    assert evm_adapter.mined_count(station.address) == 3  # one top-up each, none sent twice
    for address in addresses:
        assert evm_adapter.balance(address.address, contract=evm_node.contracts["USDT"]) == 0
        assert evm_adapter.mined_count(address.address) == 1
    paid = fees_on_chain(evm_adapter, jobs)
    flows = HouseFlow.objects.filter(biz_ref__in=[f"{j.job_no}-{w}" for j in jobs for w in ("topup", "sweep")])
    assert flows.count() == 6
    assert sum(f.amount for f in flows) == -Decimal(paid) / ONE_ETH
