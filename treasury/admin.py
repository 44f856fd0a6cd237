from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from addresses.models import AddressType, WalletAddress
from coins.models import CoinConfig
from treasury import services as treasury_services
from treasury import thresholds
from treasury.models import HotThreshold, TransferStatus, TreasuryTransfer, TreasuryTransferLog
from wallet_project.admin import ReadOnlyAdmin, ReadOnlyInline, RemarkForm, remark_page
from wallet_project.errors import WalletError


class TreasuryTransferLogInline(ReadOnlyInline):
    model = TreasuryTransferLog
    fields = ("action", "from_status", "to_status", "operator", "remark", "create_time")
    readonly_fields = fields
    ordering = ("id",)


@admin.register(TreasuryTransfer)
class TreasuryTransferAdmin(ReadOnlyAdmin):
    """Hot surplus moved to cold: ops approve or reject a proposed transfer, with a remark; the rest is the job's."""

    list_display = (
        "transfer_no",
        "coin",
        "amount",
        "from_address",
        "to_address",
        "status",
        "seen_balance",
        "seen_max_balance",
        "tx_hash",
        "fee",
        "create_time",
    )
    list_filter = ("status", "chain_id", "coin")
    search_fields = ("=transfer_no", "from_address", "to_address", "=tx_hash")
    exclude = ("raw",)  # the signed transaction: kept for rebroadcast, not shown
    inlines = [TreasuryTransferLogInline]
    actions = ["approve_transfers", "reject_transfers"]

    def has_approve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(treasury_services.APPROVE_PERMISSION)

    @admin.action(description="Approve the selected transfers to cold (with a remark)", permissions=["approve"])
    def approve_transfers(self, request: HttpRequest, queryset: QuerySet[TreasuryTransfer]) -> HttpResponse | None:
        return self._decide(request, queryset, approve=True)

    @admin.action(description="Reject the selected transfers to cold (with a remark)", permissions=["approve"])
    def reject_transfers(self, request: HttpRequest, queryset: QuerySet[TreasuryTransfer]) -> HttpResponse | None:
        return self._decide(request, queryset, approve=False)

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[TreasuryTransfer], *, approve: bool
    ) -> HttpResponse | None:
        rows = list(queryset.filter(status=TransferStatus.PROPOSED).order_by("id"))
        form = RemarkForm(request.POST if "apply" in request.POST else None)
        decide = treasury_services.treasury_transfer_approve if approve else treasury_services.treasury_transfer_reject
        if "apply" in request.POST and form.is_valid():
            remark = form.cleaned_data["remark"]
            for row in rows:
                try:
                    done = decide(transfer_id=row.id, user=request.user, remark=remark)
                except WalletError as error:  # decided meanwhile by someone else
                    self.message_user(request, f"{row.transfer_no}: {error.message}", messages.WARNING)
                else:
                    self.log_change(request, done, f"{done.get_status_display()}: {remark}")
                    self.message_user(request, f"{row.transfer_no}: {done.get_status_display()}", messages.SUCCESS)
            return None
        action = "approve_transfers" if approve else "reject_transfers"
        explanation = (
            "Each approved transfer is signed and sent by the next treasury run: the amount leaves the hot "
            "address for the cold address shown. Check both."
            if approve
            else "Nothing is sent; the same surplus is not proposed again for TREASURY_REPROPOSE_SECONDS."
        )
        title = "Approve transfers to cold" if approve else "Reject transfers to cold"
        return remark_page(self, request, action=action, title=title, explanation=explanation, rows=rows, form=form)


@admin.register(TreasuryTransferLog)
class TreasuryTransferLogAdmin(ReadOnlyAdmin):
    list_display = ("transfer", "action", "from_status", "to_status", "operator", "remark", "create_time")
    list_filter = ("action",)


class ThresholdProposeForm(forms.Form):
    address = forms.ModelChoiceField(
        queryset=WalletAddress.objects.filter(address_type=AddressType.HOT).order_by("chain_id", "id"),
        help_text="The hot address.",
    )
    coin = forms.ModelChoiceField(queryset=CoinConfig.objects.order_by("chain_id", "coin_id"), to_field_name="coin_id")
    min_balance = forms.DecimalField(required=False, max_digits=38, decimal_places=18, help_text="Empty: no minimum.")
    max_balance = forms.DecimalField(required=False, max_digits=38, decimal_places=18, help_text="Empty: no maximum.")
    remark = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}), help_text="Why.")


@admin.register(HotThreshold)
class HotThresholdAdmin(ReadOnlyAdmin):
    """Changed only by four-eyes proposals (the button above the list, or `propose_hot_threshold`)."""

    list_display = ("address", "coin", "min_balance", "max_balance", "update_time")
    list_filter = ("coin",)
    list_select_related = ("address", "coin")
    change_list_template = "admin/treasury/hotthreshold/change_list.html"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        may = request.user.has_perm(thresholds.PERMISSION)
        return super().changelist_view(request, {**(extra_context or {}), "may_propose": may})

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.propose_view)
        return [path("propose/", view, name="treasury_hotthreshold_propose"), *super().get_urls()]

    def propose_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(thresholds.PERMISSION):
            raise PermissionDenied
        form = ThresholdProposeForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                change = thresholds.threshold_propose(
                    address_id=data["address"].id,
                    coin_id=data["coin"].coin_id,
                    min_balance=data["min_balance"],
                    max_balance=data["max_balance"],
                    user=request.user,
                    reason=data["remark"],
                )
            except WalletError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(
                    request, f"Proposal #{change.pk} ({change.summary}) waits for a second person.", messages.SUCCESS
                )
                return HttpResponseRedirect(reverse("admin:treasury_hotthreshold_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Propose a hot address's limits",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/controls/form_page.html", context)
