"""The UTXO set's scanner paths a real node cannot stage (fake chain): late addresses, left-overs, conflicts."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import replace

import pytest

from addresses.models import AddressType, WalletAddress
from chains.base import Spend
from monitoring.models import Alert, Severity
from recharges import services as recharges_services
from recharges.tests.fakechain import FakeChain, transfer
from recharges.tests.helpers import tick
from utxos.models import BtcUtxo

_n = itertools.count(1)


def txid() -> str:
    return hashlib.sha256(f"utxo-scan-{next(_n)}".encode()).hexdigest()


def hot_row(address: str) -> WalletAddress:
    return WalletAddress.objects.create(
        coin_id="BTC", coin_name="BTC", chain_id="BTC", address_type=AddressType.HOT, address=address
    )


@pytest.fixture
def chain(db, settings) -> FakeChain:
    settings.SCAN_START_HEIGHTS = {"BTC": 1}
    # A BTC-like node: the match key is the address itself (case kept), as a script would be.
    return FakeChain("BTC", case_insensitive=False)


def mine(chain: FakeChain, *, pays: list[tuple[str, str, int, int]] = (), spends: list[Spend] = ()) -> None:
    """Mine a block paying (address, txid, vout, sats) and spending `spends`."""
    chain.mine([transfer(to=to, key=to, tx=tx, index=vout, amount=sats) for to, tx, vout, sats in pays])
    chain.mined[-1] = replace(chain.mined[-1], spends=list(spends))


def test_a_rescan_records_outputs_of_an_address_watched_late_and_their_spends(chain, now):
    paid, spender = txid(), txid()
    mine(chain, pays=[("hot-late", paid, 1, 5000)])
    mine(chain, spends=[Spend(paid, 1, spender)])
    tick(chain, now)
    assert not BtcUtxo.objects.exists()  # the address was not ours yet when its blocks were scanned
    hot = hot_row("hot-late")

    recharges_services.deposits_rescan_range(chain_id="BTC", from_height=1, to_height=2, now=now, adapter=chain)

    row = BtcUtxo.objects.get()
    assert (row.txid, row.vout, row.value_sats, row.address_id, row.kind) == (paid, 1, 5000, hot.id, AddressType.HOT)
    assert (row.block_height, row.spent_txid, row.spent_height) == (1, spender, 2)


def test_rows_left_at_a_height_by_another_block_are_orphaned_when_the_scanner_records_that_height(chain, now):
    hot = hot_row("hot-1")
    paid = txid()
    mine(chain, pays=[("hot-1", paid, 0, 7000)])
    tick(chain, now)
    stale = dict(address=hot, kind=AddressType.HOT, wallet_type="default", block_height=2, block_hash="ff" * 32)
    BtcUtxo.objects.create(txid=txid(), vout=0, value_sats=1, script_hex="hot-1", **stale)
    BtcUtxo.objects.filter(txid=paid).update(spent_txid=txid(), spent_height=2, spent_hash="ff" * 32)

    mine(chain)
    tick(chain, now)

    assert BtcUtxo.objects.get(block_hash="ff" * 32).orphaned is True
    assert BtcUtxo.objects.get(txid=paid).spent_txid is None


def test_a_locked_output_spent_by_another_transaction_than_its_payouts_raises_a_critical_alert(chain, now):
    hot = hot_row("hot-2")
    paid, ours, theirs = txid(), txid(), txid()
    mine(chain, pays=[("hot-2", paid, 0, 9000)])
    tick(chain, now)
    BtcUtxo.objects.filter(txid=paid).update(locked_by="W-9", pending_txid=ours)

    mine(chain, spends=[Spend(paid, 0, theirs)])
    tick(chain, now)

    row = BtcUtxo.objects.get(txid=paid)
    assert (row.spent_txid, row.pending_txid, row.address_id) == (theirs, ours, hot.id)
    alert = Alert.objects.get(kind="UTXO_SPENT_ELSEWHERE")
    assert (alert.severity, alert.subject) == (Severity.CRITICAL, "payout W-9")
    assert not Alert.objects.filter(kind="UTXO_SPENT_ELSEWHERE").exclude(id=alert.id).exists()
