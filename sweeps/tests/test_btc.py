"""
BTC sweeps on a real Bitcoin full node in regtest (bcoin): 30 deposit outputs consolidated into one
transaction to the hot wallet; a reorg that orphans it, then it is mined again and settled once;
an output worth less than its input costs stays. Every key and mnemonic here is TEST-ONLY.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from assets import selectors as assets_selectors
from assets.models import Balance, BusinessType, HouseFlow
from chains.btc import BtcAdapter
from chains.testing import btc_coinbase_utxo, btc_node, btc_sign  # noqa: F401
from coins.models import CoinConfig
from recharges.tests.helpers import tick
from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepStatus
from sweeps.tests.conftest import deposit_addresses, hot_and_station, house_network_fees, seeds_create
from utxos.models import BtcUtxo
from utxos.testing import utxo_set_differences

pytestmark = [pytest.mark.mysql, pytest.mark.slow]
SAT = Decimal("0.00000001")
_coinbase_heights = itertools.count(1)


@pytest.fixture
def btc(db, vault, settings, btc_node):
    # 20 sat/vB: an input costs 1,360 sat to spend, below SWEEP_BTC_MAX_FEE_RATE_SAT_VB's 30.
    adapter = BtcAdapter(
        url=btc_node.url, network="regtest", connect_timeout=1, read_timeout=10, fee_fallback_sat_vb=20
    )
    settings.SWEEP_BTC_MAX_FEE_RATE_SAT_VB = 30
    settings.SCAN_START_HEIGHTS = {"BTC": adapter.tip_height() + 1}
    CoinConfig.objects.filter(coin_id="BTC").update(required_confirmations=2, min_recharge_amount=SAT)
    seeds_create("BTC")
    hot, _ = hot_and_station("BTC")
    return adapter, hot


def fund(adapter: BtcAdapter, node, payments: list[tuple[str, int]]) -> str:
    """One transaction from a miner's coinbase paying every (address, satoshis); broadcast, not mined."""
    (to, amount), *more = payments
    unsigned = adapter.build_transfer(
        from_address=node.miner_address,
        to_address=to,
        amount_base_units=amount,
        outputs=more,
        utxos=[btc_coinbase_utxo(node, next(_coinbase_heights))],
        fee_rate_sat_vb=3,
    )
    signed = btc_sign(unsigned, node.miner_private_key)
    return adapter.broadcast_irreversible(signed)


def test_30_deposits_are_consolidated_once_even_when_a_reorg_orphans_the_consolidation(btc, btc_node):
    adapter, hot = btc
    start = adapter.tip_height() + 1
    addresses = deposit_addresses("BTC", 31)
    payments = [(a.address, 1_000_000 + i) for i, a in enumerate(addresses[:30])]
    payments.append((addresses[30].address, 1_000))  # worth less than the 1,360 sat its input costs
    fund(adapter, btc_node, payments)
    btc_node.mine(2)
    now = timezone.now()
    tick(adapter, now)
    users_before = dict(Balance.objects.values_list("id", "available"))
    assert BtcUtxo.objects.filter(address__in=addresses).count() == 31

    first = sweeps_services.sweeps_run(chain_id="BTC", adapter=adapter)
    job = SweepJob.objects.get()
    assert (first.signed, first.broadcast, job.status, job.inputs) == (1, 1, SweepStatus.BROADCAST, 30)
    (mined_in,) = btc_node.mine(1)
    tick(adapter, now)
    assert adapter.tx_status(job.tx_hash).block_hash == mined_in

    btc_node.rpc("invalidateblock", mined_in)  # the consolidation's block is orphaned; bcoin empties its mempool
    btc_node.mine(2)  # a longer branch without it
    tick(adapter, now)
    assert adapter.tx_status(job.tx_hash).found is False
    sweeps_services.sweeps_run(chain_id="BTC", adapter=adapter)  # sends the same transaction again
    assert adapter.tx_status(job.tx_hash).found is True
    btc_node.mine(2)
    tick(adapter, now)
    settled = sweeps_services.sweeps_run(chain_id="BTC", adapter=adapter)
    tick(adapter, now)
    again = sweeps_services.sweeps_run(chain_id="BTC", adapter=adapter)  # nothing left worth sweeping

    job.refresh_from_db()
    assert SweepJob.objects.count() == 1 and (settled.confirmed, again.signed) == (1, 0)
    assert job.status == SweepStatus.CONFIRMED
    total = sum(amount for _, amount in payments[:30])
    out = btc_node.rpc("gettxout", job.tx_hash, 0)
    assert out["scriptPubKey"]["hex"] == adapter.match_key(hot.address)
    assert int(Decimal(str(out["value"])) / SAT) == int(job.amount / SAT) == total - int(job.fee / SAT)
    raw = btc_node.rpc("getrawtransaction", job.tx_hash, True)
    assert len(raw["vin"]) == 30 and len(raw["vout"]) == 1  # one output: all to the hot wallet, no change
    swept = BtcUtxo.objects.filter(address__in=addresses[:30])
    assert set(swept.values_list("spent_txid", flat=True)) == {job.tx_hash}
    dust = BtcUtxo.objects.get(address=addresses[30])
    assert (dust.spent_txid, dust.locked_by) == (None, None)  # left to grow
    assert BtcUtxo.objects.get(txid=job.tx_hash, vout=0).address_id == hot.id
    assert house_network_fees("BTC") == -job.fee
    assert HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE).count() == 1
    assert utxo_set_differences(btc_node, adapter, start) == []
    assert dict(Balance.objects.values_list("id", "available")) == users_before
    assert assets_selectors.ledger_mismatches() == []


def test_no_consolidation_while_fees_are_above_the_configured_level(btc, btc_node, settings):
    adapter, _ = btc
    settings.SWEEP_BTC_MAX_FEE_RATE_SAT_VB = 10  # the node's estimate is 20
    addresses = deposit_addresses("BTC", 2, prefix="pricey")
    fund(adapter, btc_node, [(a.address, 5_000_000) for a in addresses])
    btc_node.mine(2)
    tick(adapter, timezone.now())

    run = sweeps_services.sweeps_run(chain_id="BTC", adapter=adapter)

    assert (run.signed, run.waiting) == (0, 1)
    assert not SweepJob.objects.exists()
    assert not BtcUtxo.objects.filter(locked_by__isnull=False).exists()
