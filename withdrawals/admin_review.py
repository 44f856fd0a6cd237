"""
The auditors' pages in the admin: the review queue, the review panel on a withdrawal's own page,
and its approve / reject buttons.

The buttons POST (CSRF-protected by the admin) to views that need withdrawals.audit_withdrawrecord
and call withdrawal_approve / withdrawal_reject with the auditor: the services lock the row, check
the state, refuse an auditor's second approval or their own withdrawal, and write the audit log.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from wallet_project.errors import WalletError
from withdrawals import review
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus

AUDIT_PERMISSION = "withdrawals.audit_withdrawrecord"
QUEUE_PAGE_SIZE = 50


class DecisionForm(forms.Form):
    remark = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2, "cols": 60}))

    def __init__(self, *args: object, remark_required: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["remark"].required = remark_required
        self.fields["remark"].label = "Rejection remark" if remark_required else "Approval remark"
        self.fields["remark"].help_text = (
            "Required: why it is rejected (the user is told)." if remark_required else "Optional: what you checked."
        )


def decision_message(record: WithdrawRecord) -> str:
    """Return what an auditor is told after deciding: the new status, or how many approvals are still missing."""
    if record.status != WithdrawStatus.PENDING_REVIEW:
        return f"{record.withdraw_no}: {record.get_status_display()}"
    given = record.audit_logs.filter(action=review.APPROVE).count()
    missing = record.approvals_required - given
    waiting = "waiting for a second auditor" if missing == 1 else f"waiting for {missing} more auditors"
    return f"{record.withdraw_no}: {given} of {record.approvals_required} approvals — {waiting}"


def review_queue_view(model_admin: admin.ModelAdmin, request: HttpRequest) -> TemplateResponse:
    """The auditor's home: withdrawals pending review, oldest first, with what to judge each by."""
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    page = Paginator(review.review_queue(), QUEUE_PAGE_SIZE).get_page(request.GET.get("p"))
    context = {
        **model_admin.admin_site.each_context(request),
        "title": "Review queue",
        "subtitle": None,
        "opts": model_admin.model._meta,
        "page": page,
        "rows": review.review_rows(list(page.object_list)),
        "summary": review.review_queue_summary(),
        "may_audit": request.user.has_perm(AUDIT_PERMISSION),
    }
    return TemplateResponse(request, "admin/withdrawals/review_queue.html", context)


def review_context(request: HttpRequest, object_id: str) -> dict[str, object]:
    """What the withdrawal's own page shows above its fields: the review panel and, for an auditor, the buttons."""
    try:
        withdraw_id = int(object_id)
    except (TypeError, ValueError):
        return {}
    detail = review.review_detail(
        withdraw_id=withdraw_id, viewer_id=request.user.id, viewer_may_audit=request.user.has_perm(AUDIT_PERMISSION)
    )
    if detail is None:
        return {}
    return {
        "review": detail,
        "approve_form": DecisionForm(remark_required=False, prefix="approve"),
        "reject_form": DecisionForm(remark_required=True, prefix="reject"),
    }


def decision_view(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: int, *, decision: str
) -> HttpResponse:
    """Approve or reject one withdrawal from its own page, then show that page again with the outcome."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not request.user.has_perm(AUDIT_PERMISSION):
        raise PermissionDenied
    record = WithdrawRecord.objects.filter(pk=object_id).first()
    if record is None:
        raise Http404("No such withdrawal.")
    page = HttpResponseRedirect(reverse("admin:withdrawals_withdrawrecord_change", args=[record.pk]))
    form = DecisionForm(request.POST, remark_required=decision == "reject", prefix=decision)
    if not form.is_valid():
        problem = (
            "a remark is required (the user is told why)."
            if form.has_error("remark", "required")
            else " ".join(form.errors.get("remark", ["the remark is not valid."]))
        )
        done = "approved" if decision == "approve" else "rejected"
        model_admin.message_user(request, f"{record.withdraw_no}: not {done}: {problem}", messages.ERROR)
        return page
    remark = form.cleaned_data["remark"]
    decide = (
        withdrawals_services.withdrawal_approve if decision == "approve" else withdrawals_services.withdrawal_reject
    )
    try:
        done = decide(withdraw_id=record.id, auditor_id=request.user.id, remark=remark)
    except WalletError as error:  # decided meanwhile, their own, approved by them already, held...
        model_admin.message_user(request, f"{record.withdraw_no}: {error.message}", messages.WARNING)
        return page
    model_admin.log_change(request, done, f"{decision}: {remark}" if remark else decision)
    model_admin.message_user(request, decision_message(done), messages.SUCCESS)
    return page
