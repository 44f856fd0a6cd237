"""A payout worker killed with SIGKILL at each step, then restarted: one payment on chain, one
settlement, no nonce skipped. The worker is a real child process (withdrawals.tests.payout_worker)
that dies without unwinding, so the server rolls back its open transaction when the connection
drops and whatever it sent to the node stays sent; against ganache and MariaDB. Every key here is
a TEST-ONLY throwaway key."""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, HouseFlow, OutboxMessage
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from wallet_project.testing import worker_run
from withdrawals import payout as withdrawals_payout
from withdrawals.models import PayoutTx, PayoutTxStatus, WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, _hot_address, approved

# Inside the signing transaction with the withdrawal locked; after signing and storing; after the
# node took it (before that is recorded); once confirmed, before settling; inside the settlement,
# after the ledger moved, before it commits.
STEPS = ["sign.locked", "pay.signed", "broadcast.sent", "confirm.confirmed", "complete.settled"]


def _worker(step: str, evm_node) -> subprocess.CompletedProcess[bytes]:
    return worker_run("withdrawals.tests.payout_worker", step, env={"ETH_RPC_URL": evm_node.url}, timeout=120)


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("step", STEPS)
def test_a_payout_worker_killed_at_any_step_then_restarted_pays_once_and_settles_once(
    step, monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    hot = _hot_address(monkeypatch, settings, tmp_path, evm_node)  # WALLET_KEK reaches the child's env
    owner = get_user_model().objects.create_user(f"killed-{step}")
    record, to = approved(owner, "1.5")
    sent_before = evm_adapter.mined_count(hot.address)

    killed = _worker(step, evm_node)

    assert killed.returncode == -9, killed.stderr.decode()[-2000:]  # it really died at that step
    withdrawals_payout.fault_hook = None
    for _ in range(4):  # the restarted worker
        withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
        evm_node.mine(1)

    record.refresh_from_db()
    assert record.status == WithdrawStatus.COMPLETED
    assert evm_adapter.balance(to) == int(Decimal("1.497") * ONE_ETH)  # paid once
    assert evm_adapter.mined_count(hot.address) == sent_before + 1  # one transaction on chain
    assert NonceCursor.objects.get(address=hot.address).next_nonce == sent_before + 1  # no nonce skipped
    (tx,) = PayoutTx.objects.filter(payout__links__withdraw=record)
    assert (tx.status, tx.tx_hash) == (PayoutTxStatus.MINED, record.tx_hash)
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE, biz_ref=record.withdraw_no).count() == 1
    events = OutboxMessage.objects.filter(tags="WALLET_WITHDRAW", keys=record.withdraw_no)
    statuses = [e.payload["body"]["status"] for e in events]
    assert (statuses.count(WithdrawStatus.PROCESSING), statuses.count(WithdrawStatus.COMPLETED)) == (1, 1)
    actions = list(record.audit_logs.order_by("id").values_list("action", flat=True))
    assert actions == ["apply", "auto_approve", "sign", "confirm"]
    assert assets_selectors.ledger_mismatches() == []
    # The house's share, booked in the settlement's transaction: once, whatever step the kill hit.
    fee = HouseFlow.objects.get(business_type=BusinessType.HOUSE_WITHDRAW_FEE, biz_ref=record.withdraw_no)
    gas = HouseFlow.objects.get(business_type=BusinessType.HOUSE_NETWORK_FEE)
    assert (fee.amount, gas.amount * ONE_ETH) == (Decimal("0.003"), -evm_adapter.tx_status(tx.tx_hash).fee)
    assert assets_selectors.house_mismatches() == []
