"""
Auditors and signers racing on one withdrawal (MariaDB row locks, real threads).

Each decision locks the withdrawal row and re-reads what it depends on, so however the requests
interleave: two different auditors at the dual threshold approve it once; one auditor's double
submit is one approval; a rejection racing the signer ends rejected and unsigned or signed and
unrejected, never both.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from wallet_project.errors import Conflict
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus
from withdrawals.tests.test_cancel import race
from withdrawals.tests.test_onchain import _hot_address, nonce, signed_tx
from withdrawals.tests.test_withdrawals import apply, balance, fund, make_auditor

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


def approve(record: WithdrawRecord, auditor) -> object:
    return withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id)


def test_two_auditors_approving_a_dual_threshold_withdrawal_at_once_approve_it_once(user):
    fund(user, "1000")
    CoinConfig.objects.filter(coin_id="ETH").update(withdraw_dual_audit_threshold=Decimal("20"))
    first, second = make_auditor("ops-amy"), make_auditor("ops-bea")

    for n in range(4):
        record = apply(user, "50", key=f"dual-{n}")
        assert record.approvals_required == 2

        outcomes = race([lambda r=record: approve(r, first), lambda r=record: approve(r, second)])

        record.refresh_from_db()
        assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
        assert record.status == WithdrawStatus.APPROVED
        logs = list(record.audit_logs.order_by("id").values_list("action", "auditor_id"))
        assert sorted(a for action, a in logs if action == "approve") == sorted([first.id, second.id])
        assert [action for action, _ in logs].count("approve") == 2  # the second one is the approval


def test_one_auditor_submitting_twice_at_once_is_one_approval_of_two(user):
    fund(user, "1000")
    CoinConfig.objects.filter(coin_id="ETH").update(withdraw_dual_audit_threshold=Decimal("20"))
    auditor = make_auditor("ops-cal")
    record = apply(user, "50")

    outcomes = race([lambda: approve(record, auditor), lambda: approve(record, auditor)])

    record.refresh_from_db()
    assert record.status == WithdrawStatus.PENDING_REVIEW
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1
    assert record.audit_logs.filter(action="approve").count() == 1


def test_a_rejection_racing_the_signer_ends_rejected_and_unsigned_or_signed_and_not_rejected(
    user, monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    _hot_address(monkeypatch, settings, tmp_path, evm_node)
    fund(user, "10")
    auditor = make_auditor("ops-dee")
    seen = set()

    for n in range(4):
        record = apply(user, "1", key=f"rej-{n}")  # below the threshold: approved at once
        assert record.status == WithdrawStatus.APPROVED

        race(
            [
                lambda r=record: withdrawals_services.withdrawal_reject(
                    withdraw_id=r.id, auditor_id=auditor.id, remark="address on a watch list"
                ),
                lambda: withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter),
            ]
        )

        record.refresh_from_db()
        unfrozen = Flow.objects.filter(biz_ref=record.withdraw_no, business_type=BusinessType.WITHDRAW_UNFREEZE)
        if record.status == WithdrawStatus.REJECTED:
            assert (signed_tx(record), record.tx_hash, nonce(record)) == (None, None, None)
            assert unfrozen.count() == 1
            seen.add("rejected")
        else:
            assert record.status == WithdrawStatus.PROCESSING and signed_tx(record)
            assert not unfrozen.exists()
            seen.add("signed")

    processing = WithdrawRecord.objects.filter(user=user, status=WithdrawStatus.PROCESSING).count()
    assert balance(user) == (Decimal(10) - processing, Decimal(processing))
    assert assets_selectors.ledger_mismatches() == []
    assert seen
