"""
TRX and USDT-TRC20 sweeps on the TRON fake (tronpy-signed transactions checked like a node does, TRX
balances, bandwidth and energy costs kept, TRC20 run on a real EVM behind it): the token sweeps get
their energy and bandwidth topped up with TRX from the gas station first. Every key is TEST-ONLY.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone
from tronpy.keys import PrivateKey

from assets import selectors as assets_selectors
from assets.models import Balance, BusinessType, HouseFlow
from chains.testing import tron_adapter, tron_node, tron_sign  # noqa: F401
from coins.models import CoinConfig
from recharges.tests.helpers import tick
from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepStatus
from sweeps.tests.conftest import deposit_addresses, hot_and_station, house_network_fees, seeds_create

pytestmark = [pytest.mark.mysql, pytest.mark.slow]
TRX = 10**6


@pytest.fixture
def tron_setup(db, vault, settings, tron_node, tron_adapter):
    settings.SCAN_START_HEIGHTS = {"TRON": tron_adapter.tip_height() + 1}
    CoinConfig.objects.filter(chain_id="TRON").update(required_confirmations=2)
    seeds_create("TRON")
    hot, station = hot_and_station("TRON")
    tron_node.fund(station.address, 5_000 * TRX)
    tron_node.fund(hot.address, 1 * TRX)  # activated
    holder_key = PrivateKey.random()  # TEST-ONLY
    holder = holder_key.public_key.to_base58check_address()
    tron_node.fund(holder, 1_000 * TRX)
    usdt = tron_node.trc20_deploy(owner=holder, supply=10**12)
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=usdt)
    tron_node.mine(1)
    return hot, station, usdt, bytes.fromhex(holder_key.hex()), holder


def _send(adapter, key: bytes, sender: str, to: str, amount: int, contract: str | None = None) -> str:
    unsigned = adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=amount, contract=contract)
    return adapter.broadcast_irreversible(tron_sign(unsigned, key))


def test_trx_and_usdt_trc20_deposits_are_swept_with_energy_top_ups(tron_setup, tron_node, tron_adapter):
    hot, station, usdt, holder_key, holder = tron_setup
    addresses = deposit_addresses("TRON", 6)
    for i, address in enumerate(addresses):
        if i < 3:
            _send(tron_adapter, holder_key, holder, address.address, (20 + i) * TRX)
        _send(tron_adapter, holder_key, holder, address.address, (100 + i) * TRX, contract=usdt)
    tron_node.mine(1)
    now = timezone.now()
    tick(tron_adapter, now)
    tron_node.mine(2)
    tick(tron_adapter, now)
    assert Balance.objects.filter(coin_id="USDT-TRC20").count() == 6
    assert Balance.objects.filter(coin_id="TRX").count() == 3
    users_before = dict(Balance.objects.values_list("id", "available"))
    station_before = tron_adapter.balance(station.address)

    for _ in range(12):
        sweeps_services.sweeps_run(chain_id="TRON", adapter=tron_adapter)
        tron_node.mine(1)
        if not SweepJob.objects.filter(open_key__isnull=False).exists() and SweepJob.objects.count() == 9:
            break

    jobs = list(SweepJob.objects.order_by("id"))
    assert [j.status for j in jobs] == [SweepStatus.CONFIRMED] * 9, [
        (j.coin_id, j.from_address, j.status, j.reason, j.attempts) for j in jobs
    ]
    token_jobs = [j for j in jobs if j.coin_id == "USDT-TRC20"]
    assert all(j.topup_tx_hash for j in token_jobs)
    for address in addresses:
        assert tron_adapter.balance(address.address, contract=usdt) == 0
    assert tron_adapter.balance(hot.address, contract=usdt) == sum((100 + i) * TRX for i in range(6))
    trx_swept = sum(int(j.amount * TRX) for j in jobs if j.coin_id == "TRX")
    assert tron_adapter.balance(hot.address) == 1 * TRX + trx_swept
    topups = sum(int(j.topup_amount * TRX) for j in token_jobs)
    fees = {h: tron_adapter.tx_status(h).fee for j in jobs for h in (j.tx_hash, j.topup_tx_hash) if h}
    topup_fees = sum(fees[j.topup_tx_hash] for j in token_jobs)
    assert station_before - tron_adapter.balance(station.address) == topups + topup_fees
    assert house_network_fees("TRX") == -Decimal(sum(fees.values())) / TRX
    booked = HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE).count()
    assert booked == len([f for f in fees.values() if f])
    assert dict(Balance.objects.values_list("id", "available")) == users_before
    assert assets_selectors.ledger_mismatches() == []
