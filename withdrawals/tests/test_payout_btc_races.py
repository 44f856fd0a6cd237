"""
BTC payouts under concurrency and crashes, on MariaDB and bcoin regtest: two payers signing at once
never pick one UTXO, and a payout worker killed with SIGKILL at each step (after the UTXO lock,
after signing, after broadcast, before and inside the settlement) then restarted puts one payout
on chain and settles it once. Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

import subprocess
import threading

import pytest
from django.db import connection
from django.utils import timezone

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, OutboxMessage
from chains.base import SignedTx
from chains.testing import btc_adapter, btc_node  # noqa: F401
from recharges import selectors as recharges_selectors
from recharges import watchlist
from recharges.tests.conftest import deposit_seeds, make_user  # noqa: F401
from recharges.tests.helpers import tick
from utxos.models import BtcUtxo
from utxos.testing import utxo_set_differences
from wallet_project.testing import worker_run
from withdrawals import payout as withdrawals_payout
from withdrawals.models import Payout, PayoutTx, PayoutTxStatus, WithdrawStatus
from withdrawals.payout import btc as payout_btc
from withdrawals.payout.common import PayoutWaits
from withdrawals.tests.btc_payouts import BTC, apply, fund_and_scan, hot_wallet
from withdrawals.tests.test_payout_btc import mine_and_follow

pytestmark = [pytest.mark.slow, pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

STEPS = ["sign.locked", "pay.signed", "broadcast.sent", "confirm.confirmed", "complete.settled"]


@pytest.fixture(autouse=True)
def _clean():
    withdrawals_payout.fault_hook = None
    watchlist.watchlist_reset()
    yield
    withdrawals_payout.fault_hook = None
    watchlist.watchlist_reset()


@pytest.fixture
def btc(settings, deposit_seeds, btc_node, btc_adapter):
    btc_node.mine(1)  # what an earlier test left in the mempool is mined before this test's blocks
    settings.SCAN_START_HEIGHTS = {"BTC": btc_adapter.tip_height() + 1}
    settings.WITHDRAW_BTC_BATCH_WAIT_SECONDS = 0
    return btc_adapter


def outputs_paying(node, adapter, start: int, address: str) -> int:
    """How many outputs of the node's blocks start..tip pay address (read by raw RPC)."""
    script = adapter.match_key(address)
    found = 0
    for height in range(start, node.rpc("getblockcount") + 1):
        for tx in node.rpc("getblock", node.rpc("getblockhash", height), True, True)["tx"]:
            found += sum(1 for out in tx["vout"] if out["scriptPubKey"]["hex"] == script)
    return found


def _race(adapter, ids: list[int]) -> tuple[dict[int, int], dict[int, BaseException]]:
    """Each payer signs its withdrawal at once; each holds its UTXO locks until both have selected."""
    start, selected = threading.Barrier(len(ids)), threading.Barrier(len(ids), timeout=30)
    signed: dict[int, int] = {}
    failed: dict[int, BaseException] = {}
    tip = recharges_selectors.scan_height(chain_id="BTC")
    local = threading.local()

    def hold(name: str) -> None:
        if name == "sign.locked" and getattr(local, "racing", False):
            selected.wait()  # a payer that waited for the other's row lock would never get here

    def pay(withdraw_id: int) -> None:
        local.racing = True
        try:
            start.wait()
            try:
                result = payout_btc.payout_batch_sign(
                    ids=[withdraw_id], adapter=adapter, rate=2, tip=tip, now=timezone.now()
                )
                signed[withdraw_id] = result.tx_id
            except PayoutWaits as exc:
                failed[withdraw_id] = exc
                selected.wait()
        finally:
            connection.close()

    withdrawals_payout.fault_hook = hold
    threads = [threading.Thread(target=pay, args=(withdraw_id,)) for withdraw_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    withdrawals_payout.fault_hook = None
    return signed, failed


def test_two_payers_signing_at_once_spend_disjoint_utxos_and_the_node_takes_both(btc, btc_node, settings):
    start = btc.tip_height() + 1
    hot = hot_wallet(settings)
    fund_and_scan(btc, btc_node, [(hot.address, BTC), (hot.address, BTC)])
    records = [apply(make_user(f"racer-{i}"), "0.3", key=f"race-{i}") for i in range(2)]

    signed, failed = _race(btc, [r.id for r in records])

    assert failed == {} and len(signed) == 2
    txs = [PayoutTx.objects.get(id=tx_id) for tx_id in signed.values()]
    inputs = [set(BtcUtxo.objects.filter(pending_txid=tx.tx_hash).values_list("id", flat=True)) for tx in txs]
    assert all(len(spent) == 1 for spent in inputs) and not inputs[0] & inputs[1]  # one output each, not the same
    for tx in txs:
        assert btc.broadcast_irreversible(SignedTx(tx_hash=tx.tx_hash, raw=tx.raw)) == tx.tx_hash
    mine_and_follow(btc, btc_node)
    for record in records:
        record.refresh_from_db()
        assert record.status == WithdrawStatus.COMPLETED
    assert utxo_set_differences(btc_node, btc, start) == []


def test_two_payers_racing_for_the_pools_only_utxo_sign_one_payout_and_the_other_waits(btc, btc_node, settings):
    hot = hot_wallet(settings)
    fund_and_scan(btc, btc_node, [(hot.address, BTC)])
    records = [apply(make_user(f"only-{i}"), "0.3", key=f"only-{i}") for i in range(2)]

    signed, failed = _race(btc, [r.id for r in records])

    assert (len(signed), len(failed)) == (1, 1)
    assert "short" in next(iter(failed.values())).message
    assert Payout.objects.count() == 1
    assert BtcUtxo.objects.filter(locked_by__isnull=False).count() == 1


def _worker(step: str, node) -> subprocess.CompletedProcess[bytes]:
    return worker_run(
        "withdrawals.tests.payout_worker",
        step,
        "BTC",
        node.miner_address,
        env={
            "BTC_RPC_URL": node.url,
            "BTC_NETWORK": "regtest",
            "BTC_REGTEST_HRP": "rb",
            "WITHDRAW_HOT_WALLET_TYPE": "withdraw",
            "WITHDRAW_BTC_BATCH_WAIT_SECONDS": "0",
            "BTC_FEE_FALLBACK_SAT_VB": "2",
        },
        timeout=180,
    )


@pytest.mark.parametrize("step", STEPS)
def test_a_btc_payout_worker_killed_at_any_step_then_restarted_pays_once_and_settles_once(
    step, btc, btc_node, settings
):
    start = btc.tip_height() + 1
    hot = hot_wallet(settings)
    fund_and_scan(btc, btc_node, [(hot.address, BTC)])
    record = apply(make_user(f"killed-{step}"), "0.4", key=f"killed-{step}")

    killed = _worker(step, btc_node)

    assert killed.returncode == -9, killed.stderr.decode()[-2000:]  # it really died at that step
    withdrawals_payout.fault_hook = None
    for _ in range(4):  # the restarted worker
        withdrawals_payout.withdrawals_pay(chain_id="BTC", adapter=btc)
        withdrawals_payout.withdrawals_confirm(chain_id="BTC", adapter=btc)
        btc_node.mine(1)
    tick(btc, timezone.now())

    record.refresh_from_db()
    assert record.status == WithdrawStatus.COMPLETED
    assert outputs_paying(btc_node, btc, start, record.to_address) == 1  # one payout on chain
    (tx,) = PayoutTx.objects.filter(payout__links__withdraw=record)
    assert (tx.status, tx.tx_hash) == (PayoutTxStatus.MINED, record.tx_hash)
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE, biz_ref=record.withdraw_no).count() == 1
    events = OutboxMessage.objects.filter(tags="WALLET_WITHDRAW", keys=record.withdraw_no)
    statuses = [e.payload["body"]["status"] for e in events]
    assert (statuses.count(WithdrawStatus.PROCESSING), statuses.count(WithdrawStatus.COMPLETED)) == (1, 1)
    actions = list(record.audit_logs.order_by("id").values_list("action", flat=True))
    assert actions == ["apply", "auto_approve", "sign", "confirm"]
    assert assets_selectors.ledger_mismatches() == []
    assert utxo_set_differences(btc_node, btc, start) == []
