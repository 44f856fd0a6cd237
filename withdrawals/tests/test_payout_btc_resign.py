"""
The ops re-sign of a BTC payout whose input was spent by another transaction, on bcoin regtest:
refused until the spend is the coin's confirmations deep and while the breaker it tripped holds,
then the same payout re-signed from another output, mined, completed once. Every key here is a
TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from addresses import selectors as addresses_selectors
from addresses import signer
from assets import selectors as assets_selectors
from assets.models import Balance, BusinessType, Flow
from chains import registry as chains_registry
from chains.base import SignedTx
from chains.btc import Utxo
from chains.testing import btc_adapter, btc_node  # noqa: F401
from controls import breakers, proposals
from controls import selectors as controls_selectors
from monitoring.models import Alert
from recharges.tests.conftest import deposit_seeds, make_user  # noqa: F401
from recharges.tests.helpers import tick
from utxos.models import BtcUtxo
from utxos.testing import utxo_set_differences
from wallet_project import roles
from wallet_project.errors import WalletError
from withdrawals import payout as withdrawals_payout
from withdrawals.models import (
    Payout,
    PayoutStatus,
    PayoutTx,
    PayoutTxKind,
    PayoutTxStatus,
    PayoutWithdrawal,
    WithdrawStatus,
)
from withdrawals.tests.btc_payouts import BTC, apply, external, fund_and_scan, paid_to
from withdrawals.tests.test_payout_btc import _clean, btc, hot, mine_and_follow, pay  # noqa: F401

pytestmark = pytest.mark.slow

CHANGELIST = "/admin/withdrawals/withdrawrecord/"


class _Stop(Exception):
    pass


def _stop_before_broadcast(name: str) -> None:
    if name == "pay.signed":
        raise _Stop(name)


def _spend_elsewhere(adapter, row: BtcUtxo, *, to: str | None = None, amount: int | None = None) -> str:
    """Spend one of the hot wallet's outputs outside the payout job, as someone holding its key would."""
    key = addresses_selectors.public_keys(address_ids=[row.address_id])[row.address_id][1]
    utxo = Utxo(txid=row.txid, vout=row.vout, value_sats=row.value_sats, script_hex=row.script_hex, public_key_hex=key)
    unsigned = adapter.build_transfer(
        from_address=row.address.address,
        to_address=to or external(),
        amount_base_units=amount or row.value_sats // 2,
        utxos=[utxo],
        fee_rate_sat_vb=5,
    )
    signed = signer.signer_for("BTC")(unsigned)
    assert adapter.broadcast_irreversible(signed) == signed.tx_hash
    return signed.tx_hash


def _operator(name: str):
    person = get_user_model().objects.create_user(name, is_staff=True)
    person.groups.add(Group.objects.get(name=roles.OPERATORS))
    return get_user_model().objects.get(pk=person.pk)  # permissions are cached per instance


def test_a_payout_whose_input_was_spent_elsewhere_is_re_signed_by_ops_once_proven_and_completes_once(
    btc, btc_node, hot, user, client, staff_roles, settings
):
    # The admin action reaches the node through the registry's adapter.
    settings.BTC_RPC_URL, settings.BTC_REGTEST_HRP, settings.BTC_FEE_FALLBACK_SAT_VB = btc_node.url, "rb", 2
    chains_registry.adapters_reset()
    start = btc.tip_height() + 1
    fund_and_scan(btc, btc_node, [(hot.address, BTC), (hot.address, BTC)])
    record = apply(user, "0.3", key="lost-input")
    second = apply(user, "0.2", key="lost-input-2")  # the same batch: one payout, two outputs
    withdrawals_payout.fault_hook = _stop_before_broadcast
    with pytest.raises(_Stop):
        pay(btc)  # stored and committed, never sent
    withdrawals_payout.fault_hook = None
    (old,) = PayoutTx.objects.all()
    (taken,) = BtcUtxo.objects.filter(pending_txid=old.tx_hash)
    thief = _spend_elsewhere(btc, taken)
    btc_node.mine(1)
    tick(btc, timezone.now())

    assert Alert.objects.filter(kind="UTXO_SPENT_ELSEWHERE").count() == 1
    assert controls_selectors.breaker_tripped(coin_id="BTC")
    ops = _operator("ops-bea")
    assert ops.has_perm("withdrawals.resign_payout")
    with pytest.raises(withdrawals_payout.InputsNotProven, match="2 confirmations deep"):
        withdrawals_payout.payout_resign(withdraw_id=record.id, operator_id=ops.id, remark="spent by hand", adapter=btc)
    btc_node.mine(1)
    tick(btc, timezone.now())
    with pytest.raises(withdrawals_payout.PayoutWaits, match="breaker"):
        withdrawals_payout.payout_resign(withdraw_id=record.id, operator_id=ops.id, remark="spent by hand", adapter=btc)
    with pytest.raises(WalletError, match="remark"):
        withdrawals_payout.payout_resign(withdraw_id=record.id, operator_id=ops.id, remark="  ", adapter=btc)
    assert list(PayoutTx.objects.values_list("status", flat=True)) == [PayoutTxStatus.SIGNED]  # nothing changed

    # Found out and cleared by two people (four eyes); only then may anything be re-signed.
    anna, carl = _operator("ops-anna"), _operator("ops-carl")
    change = breakers.breaker_clear_propose(coin_id="BTC", user=anna, remark="hot key used by hand; rotated")
    proposals.change_approve(change_id=change.id, user=carl, remark="checked")

    client.force_login(ops)
    form = {"action": "resign_payout", "_selected_action": [record.pk], "apply": "1", "remark": "output spent by hand"}
    answer = client.post(CHANGELIST, form, follow=True)
    assert answer.status_code == 200

    old.refresh_from_db()
    new = PayoutTx.objects.get(kind=PayoutTxKind.RESIGN)
    record.refresh_from_db()
    assert (old.status, new.replaces_id, new.payout_id) == (PayoutTxStatus.DROPPED, old.id, old.payout_id)
    second.refresh_from_db()
    assert record.tx_hash == new.tx_hash == second.tx_hash and Payout.objects.count() == 1
    links = PayoutWithdrawal.objects.order_by("output_index")
    assert [(link.withdraw_id, link.output_index) for link in links] == [(record.id, 0), (second.id, 1)]
    assert sum(link.fee_share for link in links) == new.fee  # the new fee, shared again
    (spent,) = btc_node.rpc("getrawtransaction", new.tx_hash, True)["vin"]  # the node took it
    assert (spent["txid"], spent["vout"]) != (taken.txid, taken.vout)
    log = record.audit_logs.get(action="resign_inputs")
    assert log.auditor_id == ops.id and log.remark.startswith("output spent by hand") and thief in log.remark
    again = client.post(CHANGELIST, form, follow=True)  # a second press re-signs nothing
    assert PayoutTx.objects.count() == 2 and "Nothing was re-signed" in again.content.decode()

    done = mine_and_follow(btc, btc_node)

    record.refresh_from_db()
    new.refresh_from_db()
    assert (done.completed, record.status, new.status) == (1, WithdrawStatus.COMPLETED, PayoutTxStatus.MINED)
    assert Payout.objects.get().status == PayoutStatus.COMPLETED
    second.refresh_from_db()
    assert second.status == WithdrawStatus.COMPLETED
    assert paid_to(btc_node, new.tx_hash, record.to_address, btc) == int(Decimal("0.2995") * BTC)
    assert paid_to(btc_node, new.tx_hash, second.to_address, btc) == int(Decimal("0.1995") * BTC)
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE).count() == 2
    balance = Balance.objects.get(user=user, coin_id="BTC")
    assert (balance.available, balance.frozen) == (Decimal("19.5"), Decimal(0))
    assert PayoutTx.objects.get(id=old.id).status == PayoutTxStatus.DROPPED
    assert assets_selectors.ledger_mismatches() == []
    assert utxo_set_differences(btc_node, btc, start) == []


def _lost_to_a_spend(btc, btc_node, hot, user, *, pays: int | None = None) -> tuple:
    """A stored, unsent payout of one withdrawal, its input spent by a foreign transaction 2 deep; breaker cleared."""
    fund_and_scan(btc, btc_node, [(hot.address, BTC), (hot.address, BTC)])
    record = apply(user, "0.3", key="lost")
    withdrawals_payout.fault_hook = _stop_before_broadcast
    with pytest.raises(_Stop):
        pay(btc)
    withdrawals_payout.fault_hook = None
    (old,) = PayoutTx.objects.all()
    (taken,) = BtcUtxo.objects.filter(pending_txid=old.tx_hash)
    record.refresh_from_db()
    thief = _spend_elsewhere(btc, taken, to=record.to_address if pays else None, amount=pays)
    btc_node.mine(2)
    tick(btc, timezone.now())
    anna, carl = _operator("ops-anna"), _operator("ops-carl")
    change = breakers.breaker_clear_propose(coin_id="BTC", user=anna, remark="hot key used by hand")
    proposals.change_approve(change_id=change.id, user=carl, remark="checked")
    return record, old, thief, _operator("ops-bea")


def test_a_spend_that_paid_the_withdrawal_by_hand_is_no_proof_and_nothing_is_paid_twice(btc, btc_node, hot, user):
    # Someone paid the withdrawal by hand from the hot wallet's output the payout had locked.
    record, old, thief, ops = _lost_to_a_spend(btc, btc_node, hot, user, pays=int(Decimal("0.2995") * BTC))
    assert paid_to(btc_node, thief, record.to_address, btc) == int(Decimal("0.2995") * BTC)

    by_hand = f"pays the address of withdrawal {record.withdraw_no}"
    with pytest.raises(withdrawals_payout.InputsNotProven, match=by_hand):
        withdrawals_payout.payout_resign(withdraw_id=record.id, operator_id=ops.id, remark="spent by hand", adapter=btc)

    assert list(PayoutTx.objects.values_list("tx_hash", "status")) == [(old.tx_hash, PayoutTxStatus.SIGNED)]
    assert BtcUtxo.objects.filter(locked_by__isnull=False).exclude(pending_txid=old.tx_hash).count() == 0
    assert not record.audit_logs.filter(action="resign_inputs").exists()


def test_a_spend_the_node_reorganised_away_before_the_scanner_saw_it_is_no_proof(btc, btc_node, hot, user):
    record, old, thief, ops = _lost_to_a_spend(btc, btc_node, hot, user)
    spent_at = BtcUtxo.objects.get(spent_txid=thief).spent_height
    # The node drops the spend's block (and bcoin its mempool) and builds a longer branch without it;
    # the scanner has not seen it yet: its set still says the input is spent 2 deep.
    btc_node.rpc("invalidateblock", btc.block_hash(spent_at))
    btc_node.mine(3)

    with pytest.raises(withdrawals_payout.InputsNotProven, match="not on the node's best chain"):
        withdrawals_payout.payout_resign(withdraw_id=record.id, operator_id=ops.id, remark="spent by hand", adapter=btc)

    # The old transaction can still be mined: it pays the withdrawal, once.
    assert btc.broadcast_irreversible(SignedTx(tx_hash=old.tx_hash, raw=old.raw)) == old.tx_hash
    done = mine_and_follow(btc, btc_node)
    record.refresh_from_db()
    assert (done.completed, record.status, record.tx_hash) == (1, WithdrawStatus.COMPLETED, old.tx_hash)
    assert PayoutTx.objects.count() == 1
    assert paid_to(btc_node, old.tx_hash, record.to_address, btc) == int(Decimal("0.2995") * BTC)


def test_the_admin_action_says_the_node_did_not_answer_instead_of_an_error_page(
    btc, btc_node, hot, user, client, staff_roles, settings
):
    record, old, _, ops = _lost_to_a_spend(btc, btc_node, hot, user)
    # The node is unreachable while the operator presses: each withdrawal gets a message, no error page.
    settings.BTC_RPC_URL, settings.BTC_REGTEST_HRP = "http://127.0.0.1:9", "rb"
    chains_registry.adapters_reset()
    client.force_login(ops)
    form = {"action": "resign_payout", "_selected_action": [record.pk], "apply": "1", "remark": "spent by hand"}

    answer = client.post(CHANGELIST, form, follow=True)

    assert answer.status_code == 200
    shown = [str(m) for m in answer.context["messages"]]
    assert shown == [f"{record.withdraw_no}: the node did not answer (ChainError); nothing was re-signed"]
    assert list(PayoutTx.objects.values_list("tx_hash", "status")) == [(old.tx_hash, PayoutTxStatus.SIGNED)]
