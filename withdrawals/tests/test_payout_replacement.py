"""Stuck EVM payouts replaced (same nonce, higher fee) and a taken nonce re-signed by ops, on ganache.

Whichever transaction of a payout is mined completes its withdrawal once; the others are recorded
as dropped. Every key here is a TEST-ONLY throwaway key.

Two flaws of ganache 7.9.2 shape the set-up (a real node has neither): it takes a raw transaction
of nonce 0 as one without a nonce (RLP encodes 0 as empty) and would execute it, or a replacement
of it, twice; and if the first transaction of a sender with a nonce above 0 that waits in its pool
is replaced, the replacement gets a receipt for a block that ganache then stores without it. So
each test first pays twice, the second time with the miner stopped: the payouts under test carry
nonces from 2. (The adapter never resends a transaction whose nonce a mined one used.)
"""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from eth_account import Account

from addresses import signer
from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, HouseFlow
from chains import registry as chains_registry
from chains.base import SignedTx
from chains.testing import evm_adapter, evm_node  # noqa: F401
from controls import breakers as controls_breakers
from controls import proposals as controls_proposals
from controls.models import BreakerSource, CoinBreaker
from monitoring.models import Alert
from withdrawals import payout as withdrawals_payout
from withdrawals.models import Payout, PayoutTx, PayoutTxKind, PayoutTxStatus, WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, approved, hot  # noqa: F401

STUCK = 1800
CHANGELIST = "/admin/withdrawals/withdrawrecord/"


@pytest.fixture(autouse=True)
def _no_fault(settings):
    settings.WITHDRAW_STUCK_SECONDS = STUCK
    withdrawals_payout.fault_hook = None
    yield
    withdrawals_payout.fault_hook = None


@pytest.fixture
def miner(evm_node):
    """Stops ganache's miner for the test's body (started again at the end whatever happens)."""

    class Miner:
        def stop(self) -> None:
            evm_node.w3.provider.make_request("miner_stop", [])

        def start(self) -> None:
            # miner_start mines the pending transactions in the background; an evm_mine racing that
            # makes ganache keep a receipt of a block it then replaces: wait until they are mined.
            request = evm_node.w3.provider.make_request
            pending = request("txpool_content", [])["result"]["pending"]
            hashes = [tx["hash"] for txs in pending.values() for tx in txs.values()]
            request("miner_start", [])
            deadline = time.monotonic() + 10
            for tx_hash in hashes:
                while not _canonical_receipt(request, tx_hash):
                    assert time.monotonic() < deadline, "ganache did not mine its pending transactions"
                    time.sleep(0.02)

    handle = Miner()
    yield handle
    handle.start()


def _canonical_receipt(request, tx_hash: str) -> bool:
    receipt = request("eth_getTransactionReceipt", [tx_hash])["result"]
    if receipt is None:
        return False
    block = request("eth_getBlockByNumber", [receipt["blockNumber"], False])["result"]
    return block is not None and block["hash"] == receipt["blockHash"]


def _warm_up(user, evm_node, evm_adapter, miner) -> None:
    """Two payouts completed first, the second sent while the miner is stopped (see the docstring)."""
    for key in ("warm-0", "warm-1"):
        approved(user, "0.5", key=key)
        if key == "warm-1":
            miner.stop()
        withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
        miner.start()
        evm_node.mine(2)
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)


def _confirm(evm_adapter, at):
    return withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter, now=at)


def _txs(record) -> list[PayoutTx]:
    return list(PayoutTx.objects.filter(payout__links__withdraw=record).order_by("id"))


def test_a_stuck_payout_is_replaced_with_the_same_nonce_and_completes_once(
    hot, user, evm_node, evm_adapter, miner, admin_client
):
    _warm_up(user, evm_node, evm_adapter, miner)
    record, to = approved(user, "2", key="stuck")
    start = timezone.now()
    miner.stop()  # the node takes the transaction but mines nothing

    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter, now=start)
    early = _confirm(evm_adapter, start + timedelta(seconds=STUCK - 1))
    late = _confirm(evm_adapter, start + timedelta(seconds=STUCK + 1))

    original, replacement = _txs(record)
    assert (paid.broadcast, early.replaced, late.replaced) == (1, 0, 1)
    assert (original.kind, replacement.kind, replacement.replaces_id) == ("ORIGINAL", "REPLACEMENT", original.id)
    assert original.nonce == replacement.nonce == 2
    assert replacement.max_fee_per_gas >= original.max_fee_per_gas * 1125 // 1000
    assert replacement.max_priority_fee_per_gas >= original.max_priority_fee_per_gas * 1125 // 1000
    assert replacement.status == PayoutTxStatus.BROADCAST and replacement.gas_limit == original.gas_limit
    record.refresh_from_db()
    assert record.tx_hash == replacement.tx_hash  # the user sees the newest transaction
    pool = evm_node.w3.provider.make_request("txpool_content", [])["result"]["pending"]
    assert [tx["hash"] for txs in pool.values() for tx in txs.values()] == [replacement.tx_hash]

    miner.start()
    evm_node.mine(2)
    done = _confirm(evm_adapter, start + timedelta(seconds=STUCK + 2))
    again = _confirm(evm_adapter, start + timedelta(seconds=STUCK * 3))

    record.refresh_from_db()
    mined = [tx for tx in (original, replacement) if evm_adapter.tx_status(tx.tx_hash).block_number is not None]
    assert [tx.tx_hash for tx in mined] == [replacement.tx_hash]  # exactly one of the two
    assert (done.completed, again.completed, again.replaced, record.status) == (1, 0, 0, WithdrawStatus.COMPLETED)
    assert record.tx_hash == replacement.tx_hash
    assert {tx.tx_hash: tx.status for tx in _txs(record)} == {
        original.tx_hash: PayoutTxStatus.DROPPED,
        replacement.tx_hash: PayoutTxStatus.MINED,
    }
    assert _txs(record)[1].fee > 0  # the network fee the mined one paid, from its receipt
    booked = HouseFlow.objects.filter(
        business_type=BusinessType.HOUSE_NETWORK_FEE, ref_tx_hash__in=[original.tx_hash, replacement.tx_hash]
    )
    # One booking, of the mined one: the dropped original paid nothing.
    assert [(f.ref_tx_hash, f.amount) for f in booked] == [(replacement.tx_hash, -_txs(record)[1].fee)]
    assert evm_adapter.balance(to) == int(Decimal("1.997") * ONE_ETH)  # paid once
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE, biz_ref=record.withdraw_no).count() == 1
    actions = list(record.audit_logs.order_by("id").values_list("action", flat=True))
    assert actions == ["apply", "auto_approve", "sign", "replace", "confirm"]
    assert Alert.objects.get(kind="WITHDRAW_REPLACED").subject == f"withdrawal {record.withdraw_no}"
    assert assets_selectors.ledger_mismatches() == []
    page = admin_client.get(f"/admin/withdrawals/payout/{original.payout_id}/change/")  # ops see both, read-only
    assert page.status_code == 200 and original.tx_hash in page.content.decode()
    assert replacement.tx_hash in page.content.decode()


def test_when_the_original_is_mined_before_its_replacement_is_sent_the_original_completes(
    hot, user, evm_node, evm_adapter, miner
):
    _warm_up(user, evm_node, evm_adapter, miner)
    record, to = approved(user, "2", key="stuck")
    start = timezone.now()
    miner.stop()
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter, now=start)

    def crash(step: str) -> None:
        if step == "replace.signed":
            raise RuntimeError("killed after the replacement was stored, before it was sent")

    withdrawals_payout.fault_hook = crash
    with pytest.raises(RuntimeError):
        _confirm(evm_adapter, start + timedelta(seconds=STUCK + 1))
    withdrawals_payout.fault_hook = None
    miner.start()  # the original is mined meanwhile
    evm_node.mine(2)
    resent = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter, now=start)
    _confirm(evm_adapter, start + timedelta(seconds=STUCK + 2))

    original, replacement = _txs(record)
    record.refresh_from_db()
    assert resent.broadcast == 0  # its nonce is used: the stored replacement is never sent
    assert evm_node.w3.eth.get_transaction_receipt(original.tx_hash)["status"] == 1
    assert evm_adapter.tx_status(replacement.tx_hash).found is False
    assert (original.status, replacement.status) == (PayoutTxStatus.MINED, PayoutTxStatus.DROPPED)
    assert (record.status, record.tx_hash) == (WithdrawStatus.COMPLETED, original.tx_hash)
    assert evm_adapter.balance(to) == int(Decimal("1.997") * ONE_ETH)


def test_a_replacement_above_the_fee_ceiling_is_not_signed_and_the_stuck_payout_is_alerted(
    hot, user, evm_node, evm_adapter, miner, settings
):
    _warm_up(user, evm_node, evm_adapter, miner)
    record, _ = approved(user, "2", key="stuck")
    start = timezone.now()
    miner.stop()
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter, now=start)
    (original,) = _txs(record)
    settings.ETH_MAX_FEE_PER_GAS_CEILING_WEI = original.max_fee_per_gas  # no room for the bump

    late = _confirm(evm_adapter, start + timedelta(seconds=STUCK + 1))

    assert (late.replaced, len(_txs(record))) == (0, 1)
    alert = Alert.objects.get(kind="WITHDRAW_STUCK")
    assert "cannot be replaced" in alert.message and "ETH_MAX_FEE_PER_GAS_CEILING_WEI" in alert.message


def _take_the_nonce(evm_node, evm_adapter, *, tx: PayoutTx) -> str:
    """Another transaction of the hot address takes the payout's nonce (sent by other means)."""
    market = evm_adapter.fee_market()
    unsigned = evm_adapter.build_transfer(
        from_address=tx.payout.from_address,
        to_address=Account.create().address,  # TEST-ONLY
        amount_base_units=10**15,
        nonce=tx.nonce,
        max_fee_per_gas=tx.max_fee_per_gas * 2,
        max_priority_fee_per_gas=tx.max_priority_fee_per_gas * 2,
    )
    other = signer.signer_for("ETH")(unsigned)
    evm_adapter.broadcast_irreversible(SignedTx(tx_hash=other.tx_hash, raw=other.raw))
    assert market.base_fee is not None
    return other.tx_hash


def _operator(codenames: list[str], name: str = "ops-nina"):
    operator = get_user_model().objects.create_user(name, is_staff=True)
    operator.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=operator.pk)


def test_a_payout_whose_nonce_another_transaction_took_is_alerted_and_re_signed_by_ops_once_proven(
    hot, user, evm_node, evm_adapter, miner, settings, client
):
    settings.ETH_RPC_URL = evm_node.url
    chains_registry.adapters_reset()
    _warm_up(user, evm_node, evm_adapter, miner)
    record, to = approved(user, "2", key="lost")
    miner.stop()
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    (lost,) = _txs(record)
    other = _take_the_nonce(evm_node, evm_adapter, tx=lost)
    miner.start()  # the other transaction is mined with nonce 2; ours can never be

    seen = withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    alert = Alert.objects.get(kind="WITHDRAW_NONCE_TAKEN")
    assert seen.waiting == 1 and alert.subject == f"withdrawal {record.withdraw_no}"
    assert "nonce 2 of hot address" in alert.message and "Re-sign with a new nonce" in alert.message
    assert evm_node.w3.eth.get_transaction_receipt(other)["status"] == 1
    # Something else signed with the hot key: the chain's payouts stop until two people clear it,
    # and the breaker is tripped once however often the confirm job sees the taken nonce.
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    eth_breaker = CoinBreaker.objects.get(coin_id="ETH")
    assert (eth_breaker.tripped, eth_breaker.source, eth_breaker.trip_count) == (True, BreakerSource.PAYOUT, 1)
    assert CoinBreaker.objects.get(coin_id="USDT-ERC20").tripped
    for coin_id in ("ETH", "USDT-ERC20"):
        proposed = controls_breakers.breaker_clear_propose(
            coin_id=coin_id,
            user=_operator(["clear_coinbreaker"], name=f"ops-{coin_id}-a"),
            remark="stray transaction explained",
        )
        controls_proposals.change_approve(
            change_id=proposed.id,
            user=_operator(["clear_coinbreaker", "decide_settingschange"], name=f"ops-{coin_id}-b"),
        )
    assert not CoinBreaker.objects.get(coin_id="ETH").tripped

    form = {"action": "resign_payout", "_selected_action": [record.pk], "apply": "1", "remark": "nonce 2 taken"}
    client.force_login(_operator(["view_withdrawrecord"], name="ops-otto"))
    assert 'value="resign_payout"' not in client.get(CHANGELIST).content.decode()  # needs its own permission
    client.post(CHANGELIST, form)
    assert len(_txs(record)) == 1

    client.force_login(_operator(["view_withdrawrecord", "resign_payout"]))
    no_remark = client.post(CHANGELIST, {**form, "remark": ""})
    assert no_remark.status_code == 200 and len(_txs(record)) == 1  # the form asks for the remark again
    early = client.post(CHANGELIST, form, follow=True)  # mined 1 block deep, the coin needs 2
    assert "is not used at block" in early.content.decode() and len(_txs(record)) == 1

    evm_node.mine(1)
    client.post(CHANGELIST, form)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    dropped, resigned = _txs(record)
    record.refresh_from_db()
    assert (dropped.status, resigned.kind, resigned.status) == ("DROPPED", PayoutTxKind.RESIGN, "MINED")
    assert (resigned.nonce, Payout.objects.get(links__withdraw=record).nonce) == (3, 3)
    assert (record.status, record.tx_hash) == (WithdrawStatus.COMPLETED, resigned.tx_hash)
    assert evm_adapter.balance(to) == int(Decimal("1.997") * ONE_ETH)  # paid once
    log = record.audit_logs.get(action="resign_nonce")
    assert (log.auditor.username, log.from_status, log.to_status) == ("ops-nina", 4, 4)
    assert log.remark.startswith("nonce 2 taken") and resigned.tx_hash in log.remark
    assert assets_selectors.ledger_mismatches() == []


def test_ops_cannot_re_sign_a_payout_whose_transaction_is_still_pending(hot, user, evm_node, evm_adapter, miner):
    _warm_up(user, evm_node, evm_adapter, miner)
    record, _ = approved(user, "2", key="pending")
    miner.stop()
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    operator = _operator(["resign_payout"])

    with pytest.raises(withdrawals_payout.NonceNotProven, match="may still be mined"):
        withdrawals_payout.payout_resign_nonce(
            withdraw_id=record.id, operator_id=operator.id, remark="looks stuck", adapter=evm_adapter
        )

    assert len(_txs(record)) == 1 and not record.audit_logs.filter(action="resign_nonce").exists()
