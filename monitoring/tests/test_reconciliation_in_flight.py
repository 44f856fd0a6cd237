"""
Reconciliation while sweeps, gas top-ups and treasury transfers are in flight, on ganache: their
network fee leaves the chain when they are mined and is booked only at their confirmations; a
run in between must count it as outbound and stay balanced. Every key here is TEST-ONLY.
"""

# ruff: noqa: F811 - pytest fixtures imported from other test modules are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from addresses import services as addresses_services
from assets import selectors as assets_selectors
from assets.models import HouseAccount
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from monitoring.tests.test_reconciliation import (  # noqa: F401 - fixtures
    ONE_ETH,
    _eth_deposits,
    _fresh_scanner,
    balanced,
    eth,
    mnemonics,
    nothing_tripped,
    tick,
)
from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepStatus
from treasury import sending
from treasury import services as treasury_services
from treasury.models import TransferStatus, TreasuryTransfer
from treasury.tests.helpers import limits_set, operator, reading_store

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def _fees(evm_adapter, hashes) -> Decimal:
    return sum((Decimal(evm_adapter.tx_status(h).fee) / ONE_ETH for h in hashes if h), Decimal(0))


def test_sweeps_top_ups_and_a_treasury_transfer_balance_between_mining_and_confirmation(
    eth, evm_node, evm_adapter, settings
):
    settings.SWEEP_CHAINS = ["ETH"]
    settings.SWEEP_WORKERS = 1  # the test runs in one transaction: other threads would not see its rows
    settings.TREASURY_CHAINS = ["ETH"]
    settings.TREASURY_AUTO_SEND_COINS = ["ETH"]
    CoinConfig.objects.filter(chain_id="ETH").update(sweep_threshold=Decimal("0.001"))
    (station,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="gas", count=1)
    evm_node.send_tx({"to": station.address, "value": 2 * ONE_ETH})
    _eth_deposits(evm_node, evm_adapter)
    tick(evm_adapter, "ETH")
    balanced("ETH", evm_adapter)

    in_flight, quiet = [], 0
    for _ in range(12):
        swept = sweeps_services.sweeps_run(chain_id="ETH", adapter=evm_adapter)
        run = balanced("ETH", evm_adapter)  # mined (instamine), fees not booked yet
        balanced("USDT-ERC20", evm_adapter)
        if run.outbound:
            in_flight.append(run)
        evm_node.mine(1)
        tick(evm_adapter, "ETH")
        quiet = 0 if swept.planned or SweepJob.objects.filter(open_key__isnull=False).exists() else quiet + 1
        if quiet == 2:  # a job that closes lets the address's next coin be planned on the run after
            break
    jobs = list(SweepJob.objects.exclude(status=SweepStatus.SKIPPED))
    assert {job.status for job in jobs} == {SweepStatus.CONFIRMED}
    assert any(job.topup_tx_hash for job in jobs) and any(job.coin_id == "ETH" for job in jobs), [
        (j.coin_id, j.status, j.reason, j.topup_tx_hash) for j in SweepJob.objects.all()
    ]
    assert in_flight, "no run saw a sweep mined and not yet confirmed"
    items = [item for run in in_flight for item in run.details["items"]]
    assert any("gas top-up mined" in item for item in items), items
    sweep_fees = _fees(evm_adapter, [h for job in jobs for h in (job.tx_hash, job.topup_tx_hash)])

    # Hot surplus to cold: mined, then a run before its confirmations.
    cold = addresses_services.cold_address_add(chain_id="ETH", address=Account.create().address)  # empty
    limits_set(address=eth, coin_id="ETH", low=None, high="4", proposer=operator("ops-1"), approver=operator("ops-2"))
    reading_store(adapter=evm_adapter)
    assert treasury_services.treasury_plan(chain_id="ETH").approved == 1
    sending.treasury_send(chain_id="ETH", adapter=evm_adapter)
    transfer = TreasuryTransfer.objects.get()
    assert evm_adapter.tx_status(transfer.tx_hash).block_number is not None
    run = balanced("ETH", evm_adapter)
    transfer_fee = _fees(evm_adapter, [transfer.tx_hash])
    assert run.outbound == transfer_fee
    for _ in range(3):
        evm_node.mine(1)
        sending.treasury_confirm(chain_id="ETH", adapter=evm_adapter)
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.CONFIRMED
    assert evm_adapter.balance(cold.address) > 0
    tick(evm_adapter, "ETH")
    final = balanced("ETH", evm_adapter)
    assert final.outbound == 0
    fees = assets_selectors.house_balances(coin_id="ETH")[HouseAccount.NETWORK_FEES]
    assert fees == -(sweep_fees + transfer_fee)  # each fee booked once, to the wei
    nothing_tripped()
