from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from wallet_project.admin import ReadOnlyAdmin, ReadOnlyInline, amount_column, hash_column
from wallet_project.errors import WalletError
from withdrawals import admin_review
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import Payout, PayoutTx, PayoutWithdrawal, WithdrawAuditLog, WithdrawRecord, WithdrawRiskVerdict


class WithdrawAuditLogInline(ReadOnlyInline):
    model = WithdrawAuditLog
    fields = ("auditor", "action", "from_status", "to_status", "remark", "create_time")
    readonly_fields = fields


class WithdrawRiskVerdictInline(ReadOnlyInline):
    model = WithdrawRiskVerdict
    fields = ("stage", "rule", "outcome", "detail", "create_time")
    readonly_fields = fields


class AuditForm(forms.Form):
    remark = forms.CharField(max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args: object, remark_required: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["remark"].required = remark_required
        self.fields["remark"].help_text = "Shown to the user." if remark_required else "Optional."


@admin.register(WithdrawRecord)
class WithdrawRecordAdmin(ReadOnlyAdmin):
    """Decided by the buttons on its page or by list actions; never saved from a form (a Save raced a payout)."""

    list_display = (
        "withdraw_no", "user", "coin", "amount_shown", "fee_shown", "status", "to_address", "tx_hash_shown",
        "create_time",
    )  # fmt: skip
    list_filter = ("coin", "status")
    search_fields = ("withdraw_no", "tx_hash", "to_address", "from_address", "=user__id", "user__username")
    list_select_related = ("user", "coin")
    inlines = [WithdrawRiskVerdictInline, WithdrawAuditLogInline]
    date_hierarchy = "create_time"
    actions = ["approve", "reject", "resign_payout"]

    amount_shown = amount_column("amount", "amount")
    fee_shown = amount_column("fee", "fee")
    tx_hash_shown = hash_column("tx_hash", "tx hash")

    # --- the review queue and the decision buttons on a withdrawal's page (admin_review) ---------

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view
        return [
            path("review/", view(self.review_queue_view), name="withdrawals_withdrawrecord_review"),
            path("<int:object_id>/approve/", view(self.approve_view), name="withdrawals_withdrawrecord_approve"),
            path("<int:object_id>/reject/", view(self.reject_view), name="withdrawals_withdrawrecord_reject"),
            *super().get_urls(),
        ]

    def review_queue_view(self, request: HttpRequest) -> HttpResponse:
        return admin_review.review_queue_view(self, request)

    def approve_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return admin_review.decision_view(self, request, object_id, decision="approve")

    def reject_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        return admin_review.decision_view(self, request, object_id, decision="reject")

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra = {**(extra_context or {}), **admin_review.review_context(request, object_id)}
        return super().change_view(request, object_id, form_url, extra)

    # --- list actions: the same decisions on several withdrawals at once -------------------------

    def has_audit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("withdrawals.audit_withdrawrecord")

    @admin.action(description="Approve the selected withdrawals", permissions=["audit"])
    def approve(self, request: HttpRequest, queryset: QuerySet[WithdrawRecord]) -> HttpResponse | None:
        return self._decide(request, queryset, decision="approve")

    @admin.action(description="Reject the selected withdrawals (their amount is unfrozen)", permissions=["audit"])
    def reject(self, request: HttpRequest, queryset: QuerySet[WithdrawRecord]) -> HttpResponse | None:
        return self._decide(request, queryset, decision="reject")

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[WithdrawRecord], *, decision: str
    ) -> HttpResponse | None:
        records = list(queryset.order_by("id"))
        form = AuditForm(request.POST if "apply" in request.POST else None, remark_required=decision == "reject")
        if "apply" in request.POST and form.is_valid():
            decide = (
                withdrawals_services.withdrawal_approve
                if decision == "approve"
                else withdrawals_services.withdrawal_reject
            )
            for record in records:
                try:
                    done = decide(withdraw_id=record.id, auditor_id=request.user.id, remark=form.cleaned_data["remark"])
                except WalletError as error:
                    self.message_user(request, f"{record.withdraw_no}: {error}", messages.WARNING)
                else:
                    self.message_user(request, admin_review.decision_message(done), messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"{decision.capitalize()} withdrawals",
            "decision": decision,
            "form": form,
            "records": records,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/withdrawals/decide.html", context)

    # --- ops: a payout whose nonce another transaction took (alert WITHDRAW_NONCE_TAKEN) ----------
    def has_resign_payout_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("withdrawals.resign_payout")

    @admin.action(
        description="Re-sign a payout that can never be mined (its nonce taken, or its BTC inputs spent elsewhere)",
        permissions=["resign_payout"],
    )
    def resign_payout(self, request: HttpRequest, queryset: QuerySet[WithdrawRecord]) -> HttpResponse | None:
        records = list(queryset.order_by("id"))
        form = ResignForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for record in records:
                try:
                    tx = withdrawals_payout.payout_resign(
                        withdraw_id=record.id, operator_id=request.user.id, remark=form.cleaned_data["remark"]
                    )
                except WalletError as error:
                    self.message_user(request, f"{record.withdraw_no}: {error}", messages.WARNING)
                    continue
                except withdrawals_payout.NODE_ERRORS as error:
                    # Rolled back; the others go on. The node's text may name its URL: the type alone is shown.
                    text = f"the node did not answer ({type(error).__name__}); nothing was re-signed"
                    self.message_user(request, f"{record.withdraw_no}: {text}", messages.WARNING)
                    continue
                sent = withdrawals_payout.payout_resign_broadcast(tx=tx)
                status = "sent" if sent else "stored; the payout job sends it"
                nonce = f", nonce {tx.nonce}" if tx.nonce is not None else ""
                self.message_user(
                    request,
                    f"{record.withdraw_no}: re-signed as {tx.tx_hash}{nonce}, {status}",
                    messages.SUCCESS,
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Re-sign payouts that can never be mined",
            "form": form,
            "records": records,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/withdrawals/resign.html", context)


class ResignForm(forms.Form):
    remark = forms.CharField(
        max_length=300,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=(
            "Which transaction took the nonce or spent the inputs, and that it did not pay this withdrawal "
            "(kept in the audit log)."
        ),
    )


class PayoutTxInline(ReadOnlyInline):
    model = PayoutTx
    fields = readonly_fields = (
        "kind", "status", "tx_hash", "nonce", "gas_limit", "max_fee_per_gas", "max_priority_fee_per_gas",
        "gas_price", "fee_limit", "fee_rate", "fee", "block_number", "broadcast_at", "created_at",
    )  # fmt: skip


@admin.register(Payout)
class PayoutAdmin(ReadOnlyAdmin):
    """Each on-chain payment and every transaction signed for it (replacements, re-signs): read-only."""

    list_display = ("id", "chain_id", "coin", "from_address", "nonce", "status", "created_at", "settled_at")
    list_filter = ("chain_id", "status")
    search_fields = ("from_address", "txs__tx_hash", "links__withdraw__withdraw_no")
    inlines = [PayoutTxInline]


@admin.register(PayoutTx)
class PayoutTxAdmin(ReadOnlyAdmin):
    """Every signed transaction of every payout, stored before broadcast: read-only."""

    list_display = ("tx_hash", "payout", "kind", "status", "nonce", "max_fee_per_gas", "gas_price", "block_number")
    list_filter = ("kind", "status")
    search_fields = ("tx_hash", "payout__from_address")
    list_select_related = ("payout",)


@admin.register(PayoutWithdrawal)
class PayoutWithdrawalAdmin(ReadOnlyAdmin):
    """Which withdrawals each payout pays (a BTC batch: several, each its output and fee share): read-only."""

    list_display = ("payout", "withdraw", "output_index", "amount", "fee_share")
    search_fields = ("withdraw__withdraw_no",)
    list_select_related = ("payout", "withdraw")


@admin.register(WithdrawAuditLog)
class WithdrawAuditLogAdmin(ReadOnlyAdmin):
    """Every decision on every withdrawal, for auditors: append-only."""

    list_display = ("withdraw", "action", "from_status", "to_status", "auditor", "remark", "create_time")
    list_filter = ("action", "to_status")
    search_fields = ("withdraw__withdraw_no", "auditor__username")
    list_select_related = ("withdraw", "auditor")
    date_hierarchy = "create_time"


@admin.register(WithdrawRiskVerdict)
class WithdrawRiskVerdictAdmin(ReadOnlyAdmin):
    """What each risk rule said about each withdrawal, at apply and at every approval: append-only."""

    list_display = ("withdraw", "stage", "rule", "outcome", "detail", "create_time")
    list_filter = ("rule", "outcome", "stage")
    search_fields = ("withdraw__withdraw_no", "=withdraw__user__id")
    list_select_related = ("withdraw",)
    date_hierarchy = "create_time"
