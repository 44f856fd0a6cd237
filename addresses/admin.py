from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from addresses import hd
from addresses import services as addresses_services
from addresses.models import (
    AddressStatus,
    AddressStatusChange,
    ColdAddressRegistration,
    HotWalletCursor,
    KeySecret,
    UserRegion,
    WalletAddress,
)
from wallet_project.admin import ReadOnlyAdmin, ReadOnlyInline, RemarkForm, remark_page
from wallet_project.errors import WalletError


class AddressStatusChangeInline(ReadOnlyInline):
    model = AddressStatusChange
    fields = ("from_status", "to_status", "operator", "remark", "create_time")
    readonly_fields = fields
    ordering = ("-id",)


class ColdAddressForm(forms.Form):
    chain_id = forms.ChoiceField(label="Chain", choices=[(c, c) for c in hd.CHAINS])
    address = forms.CharField(max_length=128, help_text="Checked for the chain and network (checksums).")
    wallet_type = forms.CharField(
        max_length=50, initial="default", help_text="The business pool whose hot surplus goes here first."
    )
    remark = forms.CharField(
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why, and where its key is kept (never the key itself): kept with your name and the time.",
    )


@admin.register(WalletAddress)
class WalletAddressAdmin(ReadOnlyAdmin):
    """Addresses are derived, assigned and paid from by services; ops only disable or enable one, with a remark."""

    list_display = (
        "address",
        "chain_id",
        "coin",
        "address_type",
        "wallet_type",
        "region",
        "user",
        "status",
        "derivation_path",
        "create_time",
    )
    list_filter = ("chain_id", "address_type", "wallet_type", "status")
    search_fields = ("address", "=user__id", "user__username")
    list_select_related = ("user", "coin")
    inlines = [AddressStatusChangeInline]
    actions = ["disable_addresses", "enable_addresses"]
    # A pool holds hundreds of thousands of rows: no full COUNT(*) per page.
    show_full_result_count = False

    def has_change_status_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("addresses.change_address_status")

    change_list_template = "admin/addresses/walletaddress/change_list.html"

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        may = request.user.has_perm("addresses.register_cold_address")
        return super().changelist_view(request, {**(extra_context or {}), "may_register_cold": may})

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.register_cold_view)
        return [path("register-cold/", view, name="addresses_walletaddress_register_cold"), *super().get_urls()]

    def register_cold_view(self, request: HttpRequest) -> HttpResponse:
        """Register a watch-only cold address: no key enters the system, the address is validated per chain."""
        if not request.user.has_perm("addresses.register_cold_address"):
            raise PermissionDenied
        form = ColdAddressForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                row = addresses_services.cold_address_add(
                    chain_id=data["chain_id"],
                    address=data["address"],
                    wallet_type=data["wallet_type"],
                    operator_id=request.user.id,
                    remark=data["remark"],
                )
            except WalletError as error:
                form.add_error("address", error.message)
            else:
                self.log_addition(request, row, f"cold address registered: {data['remark']}")
                self.message_user(request, f"Cold address {row.address} registered (watch-only).", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:addresses_walletaddress_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Register a cold address",
            "explanation": "A cold address is watch-only: the wallet never holds its key. Hot surpluses above "
            "their maximum are sent here by treasury transfers.",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/addresses/form_page.html", context)

    @admin.action(description="Disable the selected addresses (with a remark)", permissions=["change_status"])
    def disable_addresses(self, request: HttpRequest, queryset: QuerySet[WalletAddress]) -> HttpResponse | None:
        return self._set_status(
            request,
            queryset,
            status=AddressStatus.DISABLED,
            explanation=(
                "A disabled address is not given to a user, not used to pay withdrawals, and a user whose "
                "deposit address it is cannot fetch it. Deposits that still arrive are recorded as usual."
            ),
        )

    @admin.action(description="Enable the selected addresses again (with a remark)", permissions=["change_status"])
    def enable_addresses(self, request: HttpRequest, queryset: QuerySet[WalletAddress]) -> HttpResponse | None:
        return self._set_status(
            request, queryset, status=AddressStatus.NORMAL, explanation="The addresses are used again as before."
        )

    def _set_status(
        self, request: HttpRequest, queryset: QuerySet[WalletAddress], *, status: AddressStatus, explanation: str
    ) -> HttpResponse | None:
        rows = list(queryset.exclude(status=status).order_by("id"))
        form = RemarkForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            remark = form.cleaned_data["remark"]
            for row in rows:
                try:
                    done = addresses_services.address_status_set(
                        address_id=row.id, status=status, operator_id=request.user.id, remark=remark
                    )
                except WalletError as error:  # changed meanwhile by someone else
                    self.message_user(request, f"{row.address}: {error.message}", messages.WARNING)
                else:
                    self.log_change(request, done, f"{status.label}: {remark}")
                    self.message_user(request, f"{row.address}: {status.label}", messages.SUCCESS)
            return None
        action = "disable_addresses" if status == AddressStatus.DISABLED else "enable_addresses"
        title = "Disable addresses" if status == AddressStatus.DISABLED else "Enable addresses"
        return remark_page(self, request, action=action, title=title, explanation=explanation, rows=rows, form=form)


@admin.register(AddressStatusChange)
class AddressStatusChangeAdmin(ReadOnlyAdmin):
    """Every disable and enable of an address: who, when, why. Append-only."""

    list_display = ("address", "from_status", "to_status", "operator", "remark", "create_time")
    list_filter = ("to_status",)
    search_fields = ("address__address", "operator__username")
    list_select_related = ("address", "operator")


@admin.register(KeySecret)
class KeySecretAdmin(ReadOnlyAdmin):
    """The key vault, shown by ids, versions and public fingerprints only: never a secret or its ciphertext."""

    list_display = (
        "id",
        "key_id",
        "kind",
        "chain_id",
        "purpose",
        "label",
        "fingerprint",
        "account_path",
        "next_index",
        "key_version",
        "create_time",
        "rotate_time",
    )
    list_filter = ("kind", "chain_id", "purpose", "key_version")
    # Listed, not excluded: a field added to the model later stays hidden until someone adds it here.
    fields = (
        "key_id",
        "kind",
        "chain_id",
        "purpose",
        "label",
        "fingerprint",
        "account_path",
        "next_index",
        "key_version",
        "create_time",
        "rotate_time",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        # The ciphertext never even leaves the database for an admin page.
        return super().get_queryset(request).defer("ciphertext", "account_xpub")


@admin.register(HotWalletCursor)
class HotWalletCursorAdmin(ReadOnlyAdmin):
    list_display = ("chain_id", "wallet_type", "last_address_id", "update_time")


@admin.register(ColdAddressRegistration)
class ColdAddressRegistrationAdmin(ReadOnlyAdmin):
    """Who registered each watch-only cold address, when and why. Append-only."""

    list_display = ("address", "operator", "remark", "create_time")
    search_fields = ("address__address", "operator__username")
    list_select_related = ("address", "operator")


@admin.register(UserRegion)
class UserRegionAdmin(ReadOnlyAdmin):
    """The region each user is served from (hot wallet selection by region); set by `set_region`."""

    list_display = ("user", "region", "update_time")
    list_filter = ("region",)
    search_fields = ("=user__id", "user__username")
