"""
Reads for the auditors' pages: the review queue, and what an auditor needs beside one withdrawal
(approvals so far, the risk rules' verdicts, whether the address was paid before, the applicant's
balances and recent deposits and withdrawals).

What an auditor may do here is only shown: the services decide, under the row lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count, Min, Q, QuerySet

from assets import selectors as assets_selectors
from assets.models import Balance
from recharges import selectors as recharges_selectors
from recharges.models import RechargeRecord
from withdrawals.models import WithdrawRecord, WithdrawStatus
from withdrawals.risk import PaidBefore, Verdict, risk_facts, risk_verdicts

# The audit log's action of one auditor's approval (the last one also moves the status).
APPROVE = "approve"
# How many of the applicant's latest deposits and withdrawals the withdrawal's page shows.
RECENT = 5
# The states a withdrawal can still be rejected in (withdrawals_services.withdrawal_reject).
REJECTABLE = (WithdrawStatus.PENDING_REVIEW, WithdrawStatus.APPROVED)


def review_queue() -> QuerySet[WithdrawRecord]:
    """Return the withdrawals waiting for a decision, oldest first, with their approvals so far (`approvals`)."""
    return (
        WithdrawRecord.objects.filter(status=WithdrawStatus.PENDING_REVIEW)
        .select_related("user", "coin", "to_user")
        .annotate(approvals=Count("audit_logs", filter=Q(audit_logs__action=APPROVE)))
        .order_by("create_time", "id")
    )


@dataclass(frozen=True)
class QueueSummary:
    count: int
    oldest: datetime | None


def review_queue_summary() -> QueueSummary:
    """Return how many withdrawals wait for a decision, and since when the oldest waits."""
    found = WithdrawRecord.objects.filter(status=WithdrawStatus.PENDING_REVIEW).aggregate(
        count=Count("id"), oldest=Min("create_time")
    )
    return QueueSummary(count=found["count"], oldest=found["oldest"])


@dataclass(frozen=True)
class ReviewRow:
    record: WithdrawRecord
    approvals: int
    verdicts: list[Verdict]
    paid_before: PaidBefore

    @property
    def approvals_required(self) -> int:
        return self.record.approvals_required


def review_rows(records: Sequence[WithdrawRecord]) -> list[ReviewRow]:
    """Return each withdrawal of a page (from review_queue) with its verdicts and the address's history."""
    facts = risk_facts(records)
    return [
        ReviewRow(
            record=record,
            approvals=record.approvals,
            verdicts=risk_verdicts(record=record, facts=facts),
            paid_before=facts.paid_before(record),
        )
        for record in records
    ]


@dataclass(frozen=True)
class Approval:
    auditor: str
    at: datetime
    remark: str


@dataclass(frozen=True)
class ReviewDetail:
    row: ReviewRow
    approvals: list[Approval]
    balances: list[Balance]
    recent_deposits: list[RechargeRecord]
    recent_withdrawals: list[WithdrawRecord]
    # What the viewer's page offers, and why not when it does not.
    can_approve: bool
    can_reject: bool
    note: str


def review_detail(*, withdraw_id: int, viewer_id: int, viewer_may_audit: bool) -> ReviewDetail | None:
    """Return what the withdrawal's own page shows beside it to this viewer, or None if there is no such withdrawal."""
    record = (
        WithdrawRecord.objects.filter(id=withdraw_id)
        .select_related("user", "coin", "to_user")
        .annotate(approvals=Count("audit_logs", filter=Q(audit_logs__action=APPROVE)))
        .first()
    )
    if record is None:
        return None
    (row,) = review_rows([record])
    approvals = [
        Approval(auditor=log.auditor.get_username() if log.auditor else "—", at=log.create_time, remark=log.remark)
        for log in record.audit_logs.filter(action=APPROVE).select_related("auditor").order_by("id")
    ]
    can_approve, can_reject, note = _offer(record=record, viewer_id=viewer_id, may_audit=viewer_may_audit)
    return ReviewDetail(
        row=row,
        approvals=approvals,
        balances=list(assets_selectors.balance_list(user_id=record.user_id).select_related("coin")),
        recent_deposits=list(recharges_selectors.recharge_list(user_id=record.user_id)[:RECENT]),
        recent_withdrawals=list(
            WithdrawRecord.objects.filter(user_id=record.user_id)
            .exclude(id=record.id)
            .select_related("coin")
            .order_by("-id")[:RECENT]
        ),
        can_approve=can_approve,
        can_reject=can_reject,
        note=note,
    )


def _offer(*, record: WithdrawRecord, viewer_id: int, may_audit: bool) -> tuple[bool, bool, str]:
    if not may_audit:
        return False, False, ""
    if viewer_id in (record.user_id, record.to_user_id):
        return False, False, "This withdrawal is yours or pays you: another auditor decides it."
    if record.status not in REJECTABLE:
        return False, False, f"This withdrawal is {record.get_status_display()}: there is nothing to decide."
    if record.status == WithdrawStatus.APPROVED:
        return False, True, "Approved and not yet being paid: it can still be rejected."
    if record.audit_logs.filter(action=APPROVE, auditor_id=viewer_id).exists():
        return False, True, "You approved it already: a second, different auditor must approve it."
    return True, True, ""
