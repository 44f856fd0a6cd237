"""
BTC withdrawals paid from the exchange's UTXO set, on a real Bitcoin full node in regtest (bcoin):
selected and locked UTXOs, change to a fresh change address, signed through the signer, stored
before broadcast, confirmed like deposits, settled exactly; batches, reorgs, CPFP bumps, an empty
hot wallet. After each scenario the UTXO set is compared with the node's own block data. Every
key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from addresses.models import AddressType
from assets import selectors as assets_selectors
from assets.models import Balance, BusinessType, Flow
from chains.btc import btc_to_sats, p2wpkh_vsize
from chains.testing import btc_adapter, btc_node  # noqa: F401
from monitoring.models import Alert
from recharges import watchlist
from recharges.tests.conftest import deposit_seeds, make_user  # noqa: F401
from recharges.tests.helpers import tick
from utxos.models import BtcUtxo
from utxos.testing import utxo_set_differences
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import Payout, PayoutTx, PayoutTxKind, PayoutTxStatus, PayoutWithdrawal, WithdrawStatus
from withdrawals.payout import btc as payout_btc
from withdrawals.tests.btc_payouts import BTC, apply, fund_and_scan, hot_wallet, paid_to
from withdrawals.tests.test_withdrawals import make_auditor

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _clean():
    withdrawals_payout.fault_hook = None
    watchlist.watchlist_reset()
    yield
    withdrawals_payout.fault_hook = None
    watchlist.watchlist_reset()


@pytest.fixture
def btc(db, settings, deposit_seeds, btc_node, btc_adapter):
    """The scanner starts at the node's next block; batches are paid at once (no wait)."""
    # What an earlier test left in the mempool goes into a block before this test's first one: the
    # same hot seed derives the same change addresses in every test.
    btc_node.mine(1)
    settings.SCAN_START_HEIGHTS = {"BTC": btc_adapter.tip_height() + 1}
    settings.WITHDRAW_BTC_BATCH_WAIT_SECONDS = 0
    return btc_adapter


@pytest.fixture
def hot(btc, settings):
    return hot_wallet(settings)


def pay(adapter):
    return withdrawals_payout.withdrawals_pay(chain_id="BTC", adapter=adapter)


def confirm(adapter, now=None):
    return withdrawals_payout.withdrawals_confirm(chain_id="BTC", adapter=adapter, now=now)


def mine_and_follow(adapter, node, blocks: int = 2):
    node.mine(blocks)
    tick(adapter, timezone.now())
    return confirm(adapter)


def test_pays_an_auto_approved_and_an_audited_withdrawal_settles_them_exactly_and_keeps_the_change(
    btc, btc_node, hot, user
):
    start = btc.tip_height() + 1
    fund_and_scan(btc, btc_node, [(hot.address, 2 * BTC)])
    small = apply(user, "0.3", key="small")
    assert small.status == WithdrawStatus.APPROVED

    first = pay(btc)
    again = pay(btc)  # nothing left to sign
    early = confirm(btc)
    btc_node.mine(1)
    one_block = confirm(btc)
    done = mine_and_follow(btc, btc_node, 1)

    small.refresh_from_db()
    assert (first.signed, first.broadcast, again.signed) == (1, 1, 0)
    assert (early.waiting, one_block.waiting, done.completed) == (1, 1, 1)  # completed at 2 confirmations
    assert small.status == WithdrawStatus.COMPLETED
    (tx,) = PayoutTx.objects.filter(payout__links__withdraw=small)
    assert (tx.status, tx.tx_hash, tx.kind) == (PayoutTxStatus.MINED, small.tx_hash, PayoutTxKind.ORIGINAL)
    assert paid_to(btc_node, tx.tx_hash, small.to_address, btc) == int(Decimal("0.2995") * BTC)  # amount - fee
    (change,) = BtcUtxo.objects.filter(txid=tx.tx_hash)  # the recipient's output is not ours
    assert change.kind == AddressType.CHANGE and change.wallet_type == "withdraw"
    assert tx.fee == Decimal(2 * BTC - int(Decimal("0.2995") * BTC) - change.value_sats) / BTC
    assert tx.fee == Decimal(p2wpkh_vsize(1, 2) * 2) / BTC  # regtest has no estimate: the 2 sat/vB fallback
    (link,) = PayoutWithdrawal.objects.filter(withdraw=small)
    assert (link.output_index, link.fee_share) == (0, tx.fee)
    balance = Balance.objects.get(user=user, coin_id="BTC")
    assert (balance.available, balance.frozen) == (Decimal("9.7"), Decimal(0))

    large = apply(user, "1.5", key="large")  # above the audit threshold
    assert large.status == WithdrawStatus.PENDING_REVIEW
    withdrawals_services.withdrawal_approve(withdraw_id=large.id, auditor_id=make_auditor("btc-auditor").id)
    paid = pay(btc)
    mine_and_follow(btc, btc_node)

    large.refresh_from_db()
    assert (paid.signed, large.status) == (1, WithdrawStatus.COMPLETED)
    spent = BtcUtxo.objects.filter(spent_txid=large.tx_hash)
    assert list(spent.values_list("id", flat=True)) == [change.id]  # the change paid the next payout
    assert paid_to(btc_node, large.tx_hash, large.to_address, btc) == int(Decimal("1.4995") * BTC)
    balance.refresh_from_db()
    assert (balance.available, balance.frozen) == (Decimal("18.2"), Decimal(0))  # credited 10 twice
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE, user=user).count() == 2
    assert list(large.audit_logs.order_by("id").values_list("action", flat=True)) == [
        "apply",
        "approve",
        "sign",
        "confirm",
    ]
    assert assets_selectors.ledger_mismatches() == []
    assert utxo_set_differences(btc_node, btc, start) == []


def test_a_batch_of_five_withdrawals_shares_one_transaction_each_with_its_output_and_fee_share(
    btc, btc_node, hot, settings
):
    start = btc.tip_height() + 1
    fund_and_scan(btc, btc_node, [(hot.address, BTC), (hot.address, BTC)])
    settings.WITHDRAW_BTC_BATCH_MAX = 5
    settings.WITHDRAW_BTC_BATCH_WAIT_SECONDS = 3600
    users = [make_user(f"batch-{i}") for i in range(5)]
    records = [apply(u, f"0.{i + 1}", key=f"batch-{i}") for i, u in enumerate(users[:4])]

    early = pay(btc)  # four wait for a fifth
    records.append(apply(users[4], "0.5", key="batch-4"))
    result = pay(btc)  # five are a full batch

    assert (early.signed, result.signed, result.broadcast) == (0, 5, 1)
    (payout,) = Payout.objects.filter(chain_id="BTC")
    (tx,) = payout.txs.all()
    links = list(PayoutWithdrawal.objects.filter(payout=payout).order_by("output_index"))
    assert [link.withdraw_id for link in links] == [r.id for r in records]
    assert [link.output_index for link in links] == [0, 1, 2, 3, 4]
    vouts = btc_node.rpc("getrawtransaction", tx.tx_hash, True)["vout"]
    for link, record in zip(links, records, strict=True):  # each pays its withdrawal at its output_index
        out = vouts[link.output_index]
        assert (out["scriptPubKey"]["hex"], btc_to_sats(out["value"])) == (
            btc.match_key(record.to_address),
            int(record.actual_amount * BTC),
        )
    shares = [link.fee_share for link in links]
    assert sum(shares) == tx.fee and max(shares) - min(shares) <= Decimal("0.00000001")
    assert tx.fee == Decimal(p2wpkh_vsize(2, 6) * 2) / BTC  # two inputs: 1.5 BTC needs both

    mine_and_follow(btc, btc_node)

    for record in records:
        record.refresh_from_db()
        assert (record.status, record.tx_hash) == (WithdrawStatus.COMPLETED, tx.tx_hash)
    assert assets_selectors.ledger_mismatches() == []
    assert utxo_set_differences(btc_node, btc, start) == []


def test_a_batch_not_full_waits_for_companions_until_its_oldest_has_waited_long_enough(btc, btc_node, hot, settings):
    fund_and_scan(btc, btc_node, [(hot.address, BTC)])
    settings.WITHDRAW_BTC_BATCH_MAX = 5
    settings.WITHDRAW_BTC_BATCH_WAIT_SECONDS = 600
    record = apply(make_user("lonely"), "0.2", key="lonely")

    now = pay(btc)
    later = withdrawals_payout.withdrawals_pay(chain_id="BTC", adapter=btc, now=timezone.now() + timedelta(seconds=601))

    record.refresh_from_db()
    assert (now.signed, later.signed, record.status) == (0, 1, WithdrawStatus.PROCESSING)


def test_a_reorg_that_orphans_a_mined_payout_sends_the_same_transaction_again_never_a_second(btc, btc_node, hot, user):
    start = btc.tip_height() + 1
    fund_and_scan(btc, btc_node, [(hot.address, BTC)])
    record = apply(user, "0.4", key="reorged")
    pay(btc)
    btc_node.mine(1)
    tick(btc, timezone.now())
    confirm(btc)
    record.refresh_from_db()
    (tx,) = PayoutTx.objects.filter(payout__links__withdraw=record)
    assert (tx.refresh_from_db() or tx.status, record.block_number) == (PayoutTxStatus.MINED, btc.tip_height())

    btc_node.rpc("invalidateblock", btc.block_hash(btc.tip_height()))  # bcoin forgets the block and its mempool
    btc_node.mine(2)  # a longer branch without the payout
    tick(btc, timezone.now())
    followed = confirm(btc)  # lost by the node: back to broadcast, sent again
    tx.refresh_from_db()
    record.refresh_from_db()
    in_mempool = tx.tx_hash in btc_node.rpc("getrawmempool")

    assert (followed.completed, tx.status, tx.block_number, record.status) == (
        0,
        PayoutTxStatus.BROADCAST,
        None,
        WithdrawStatus.PROCESSING,
    )
    assert in_mempool is True
    done = mine_and_follow(btc, btc_node)
    record.refresh_from_db()
    assert (done.completed, record.status, record.tx_hash) == (1, WithdrawStatus.COMPLETED, tx.tx_hash)
    assert PayoutTx.objects.filter(payout__links__withdraw=record).count() == 1  # the same transaction
    assert Payout.objects.count() == 1
    assert paid_to(btc_node, tx.tx_hash, record.to_address, btc) == int(Decimal("0.3995") * BTC)
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE, biz_ref=record.withdraw_no).count() == 1
    assert utxo_set_differences(btc_node, btc, start) == []


def test_a_stuck_payout_is_bumped_by_a_child_spending_its_change_then_both_are_mined_and_it_completes_once(
    btc, btc_node, hot, user, settings
):
    start = btc.tip_height() + 1
    fund_and_scan(btc, btc_node, [(hot.address, BTC)])
    settings.WITHDRAW_STUCK_SECONDS = 600
    record = apply(user, "0.25", key="stuck")
    pay(btc)
    (parent,) = PayoutTx.objects.all()

    soon = confirm(btc)  # not stuck yet
    bumped = confirm(btc, now=timezone.now() + timedelta(seconds=601))  # no blocks: stuck
    again = confirm(btc, now=timezone.now() + timedelta(seconds=602))  # one child only

    child = PayoutTx.objects.get(kind=PayoutTxKind.CPFP_CHILD)
    assert (soon.replaced, bumped.replaced, again.replaced) == (0, 1, 0)
    assert (child.payout_id, child.replaces_id, child.status) == (parent.payout_id, parent.id, PayoutTxStatus.BROADCAST)
    assert set(btc_node.rpc("getrawmempool")) >= {parent.tx_hash, child.tx_hash}  # the node took the child
    (spent,) = btc_node.rpc("getrawtransaction", child.tx_hash, True)["vin"]
    assert spent["txid"] == parent.tx_hash  # it spends the payout's change
    package_rate = (parent.fee + child.fee) * BTC / (parent.vsize + child.vsize)
    assert package_rate >= 2 * parent.fee_rate  # BTC_CPFP_FEE_MULTIPLIER
    assert "cpfp" in record.audit_logs.values_list("action", flat=True)

    done = mine_and_follow(btc, btc_node)

    record.refresh_from_db()
    parent.refresh_from_db()
    child.refresh_from_db()
    assert (done.completed, record.status, record.tx_hash) == (1, WithdrawStatus.COMPLETED, parent.tx_hash)
    assert (parent.status, child.status) == (PayoutTxStatus.MINED, PayoutTxStatus.MINED)
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE, biz_ref=record.withdraw_no).count() == 1
    (kept,) = BtcUtxo.objects.filter(txid=child.tx_hash)  # the change came back to the hot wallet
    assert kept.kind == AddressType.CHANGE and kept.spent_txid is None
    assert utxo_set_differences(btc_node, btc, start) == []


def test_an_empty_hot_wallet_waits_with_one_alert_naming_the_shortfall_then_pays_once_after_a_top_up(
    btc, btc_node, hot, user
):
    record = apply(user, "0.5", key="empty")

    first = pay(btc)
    second = pay(btc)

    record.refresh_from_db()
    assert (first.signed, second.signed, record.status) == (0, 0, WithdrawStatus.APPROVED)
    (alert,) = Alert.objects.filter(kind="WITHDRAW_HOT_WALLET_SHORT")
    assert record.withdraw_no in alert.message and "0 BTC" in alert.message and "short" in alert.message
    assert not PayoutTx.objects.exists() and not BtcUtxo.objects.filter(locked_by__isnull=False).exists()

    fund_and_scan(btc, btc_node, [(hot.address, BTC)])
    topped = pay(btc)
    again = pay(btc)
    mine_and_follow(btc, btc_node)

    record.refresh_from_db()
    assert (topped.signed, again.signed, record.status) == (1, 0, WithdrawStatus.COMPLETED)
    assert Payout.objects.count() == 1 and PayoutTx.objects.count() == 1


def test_the_fee_rate_keeps_to_its_floor_and_nothing_is_signed_above_its_ceiling(btc, btc_node, hot, user, settings):
    fund_and_scan(btc, btc_node, [(hot.address, BTC)])
    record = apply(user, "0.1", key="fees")
    settings.BTC_FEE_RATE_CEILING_SAT_VB = 1  # the node's fallback (2 sat/vB) is above it

    refused = pay(btc)

    record.refresh_from_db()
    assert (refused.signed, record.status) == (0, WithdrawStatus.APPROVED)
    assert Alert.objects.filter(kind="WITHDRAW_FEE_CEILING", subject="chain BTC").count() == 1
    settings.BTC_FEE_RATE_CEILING_SAT_VB = 500
    settings.BTC_FEE_RATE_FLOOR_SAT_VB = 7
    paid = pay(btc)
    (tx,) = PayoutTx.objects.all()
    assert (paid.signed, tx.fee_rate, tx.fee) == (1, 7, Decimal(p2wpkh_vsize(1, 2) * 7) / BTC)


def test_fee_shares_split_the_fee_exactly():
    assert payout_btc.fee_shares(fee_sats=1003, count=5) == [201, 201, 201, 200, 200]
    assert sum(payout_btc.fee_shares(fee_sats=7, count=3)) == 7
