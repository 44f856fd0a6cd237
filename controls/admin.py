"""
The risk controls in the back office: circuit breakers (trip, propose to clear), the blacklist
(propose additions and removals), users' address books (read-only), the proposals a second person
approves or rejects, and the coin admin whose four-eyes settings become proposals.

Every page here is read-only; each state change is an action or a button with its own permission
that calls a service (controls.breakers, controls.services, controls.proposals) and records who,
when and why.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from coins import admin as coins_admin
from coins import services as coins_services
from coins.models import CoinConfig
from controls import breakers, changes, proposals, services
from controls.models import (
    AddressBookEntry,
    AddressBookPolicy,
    BlacklistAddress,
    BreakerLog,
    BreakerSource,
    ChangeStatus,
    CoinBreaker,
    SettingsChange,
)
from wallet_project.admin import ReadOnlyAdmin, RemarkForm, remark_page
from wallet_project.errors import WalletError

# --- circuit breakers: actions shared by the coin list and the breaker list ---------------------------


def _trip(model_admin: admin.ModelAdmin, request: HttpRequest, coin_ids: list[str]) -> HttpResponse | None:
    form = RemarkForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        for coin_id in coin_ids:
            try:
                breakers.breaker_trip(
                    coin_id=coin_id, reason=form.cleaned_data["remark"], source=BreakerSource.OPS, user=request.user
                )
            except WalletError as error:
                model_admin.message_user(request, f"{coin_id}: {error.message}", messages.WARNING)
                continue
            model_admin.message_user(
                request, f"{coin_id}: circuit breaker tripped: its withdrawals are not signed", messages.WARNING
            )
        return None
    return remark_page(
        model_admin,
        request,
        action="trip_breaker",
        title="Trip the circuit breaker",
        explanation=(
            "No withdrawal of these coins is signed until the breaker is cleared (one person proposes, a second "
            "approves). Applications are still accepted and wait. A critical alert is raised."
        ),
        rows=_rows_of(model_admin, request),
        form=form,
    )


def _propose_clear(model_admin: admin.ModelAdmin, request: HttpRequest, coin_ids: list[str]) -> HttpResponse | None:
    form = RemarkForm(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        for coin_id in coin_ids:
            try:
                change = breakers.breaker_clear_propose(
                    coin_id=coin_id, user=request.user, remark=form.cleaned_data["remark"]
                )
            except WalletError as error:
                model_admin.message_user(request, f"{coin_id}: {error.message}", messages.WARNING)
                continue
            model_admin.message_user(
                request,
                f"{coin_id}: proposal #{change.pk} to clear the breaker waits for a second person's approval",
                messages.SUCCESS,
            )
        return None
    return remark_page(
        model_admin,
        request,
        action="propose_breaker_clear",
        title="Propose to clear the circuit breaker",
        explanation=(
            "Say what was found and fixed. The breaker stays tripped until a second person with the permission "
            "approves the proposal (Risk controls → Proposed changes); a trip after this proposal makes it outdated."
        ),
        rows=_rows_of(model_admin, request),
        form=form,
    )


def _rows_of(model_admin: admin.ModelAdmin, request: HttpRequest) -> list:
    ids = request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME)
    return list(model_admin.model.objects.filter(pk__in=ids).order_by("pk"))


class _BreakerActions:
    def has_trip_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(breakers.TRIP_PERMISSION)

    def has_clear_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(breakers.CLEAR_PERMISSION)


# --- coins: the four-eyes settings become proposals ----------------------------------------------------


class CoinSettingsForm(coins_admin.CoinConfigForm):
    four_eyes_reason = forms.CharField(
        label="Why (four-eyes settings)",
        required=False,
        max_length=500,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=(
            "Required when a four-eyes setting changes (limits, fees, thresholds, confirmations, contract): "
            "those changes are proposed and take effect when a second person approves them."
        ),
    )

    def clean(self) -> dict:
        data = super().clean()
        risky = set(self.changed_data) & set(coins_services.FOUR_EYES_FIELDS)
        if self.instance.pk is not None and risky and not (data.get("four_eyes_reason") or "").strip():
            self.add_error("four_eyes_reason", f"Say why {', '.join(sorted(risky))} should change.")
        return data


class CoinSettingsAdmin(_BreakerActions, coins_admin.CoinConfigAdmin):
    """
    Coins, with their circuit breakers. A Save writes ordinary settings at once (through coin_save);
    a change of a four-eyes setting (coins.services.FOUR_EYES_FIELDS) becomes a proposal instead.
    """

    form = CoinSettingsForm
    list_display = ("coin_id", "breaker", *coins_admin.CoinConfigAdmin.list_display[1:])
    actions = ["trip_breaker", "propose_breaker_clear"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[CoinConfig]:
        tripped = CoinBreaker.objects.filter(coin_id=OuterRef("coin_id"), tripped=True)
        return super().get_queryset(request).annotate(breaker_tripped=Exists(tripped))

    @admin.display(description="breaker", boolean=False, ordering="breaker_tripped")
    def breaker(self, obj: CoinConfig) -> str:
        return "TRIPPED" if getattr(obj, "breaker_tripped", False) else "—"

    @admin.action(description="Trip the circuit breaker (stop signing withdrawals)", permissions=["trip"])
    def trip_breaker(self, request: HttpRequest, queryset: QuerySet[CoinConfig]) -> HttpResponse | None:
        return _trip(self, request, list(queryset.order_by("id").values_list("coin_id", flat=True)))

    @admin.action(description="Propose to clear the circuit breaker", permissions=["clear"])
    def propose_breaker_clear(self, request: HttpRequest, queryset: QuerySet[CoinConfig]) -> HttpResponse | None:
        return _propose_clear(self, request, list(queryset.order_by("id").values_list("coin_id", flat=True)))

    def save_model(self, request: HttpRequest, obj: CoinConfig, form: forms.ModelForm, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            return
        risky = [name for name in form.changed_data if name in coins_services.FOUR_EYES_FIELDS]
        direct = [name for name in form.changed_data if _is_model(name) and name not in risky]
        if direct:
            coins_services.coin_save(coin=obj, changed_fields=direct)
        if risky:
            request._four_eyes_change = changes.coin_settings_propose(  # read by response_change
                coin_id=obj.coin_id,
                values={name: form.cleaned_data[name] for name in risky},
                user=request.user,
                reason=form.cleaned_data["four_eyes_reason"],
                now=timezone.now(),
            )

    def response_change(self, request: HttpRequest, obj: CoinConfig) -> HttpResponse:
        change = getattr(request, "_four_eyes_change", None)
        if change is None:
            return super().response_change(request, obj)
        self.message_user(
            request,
            f"Not changed yet: proposal #{change.pk} ({change.summary}) waits for a second person's approval. "
            "Other changes, if any, were saved.",
            messages.WARNING,
        )
        return HttpResponseRedirect(reverse("admin:controls_settingschange_change", args=[change.pk]))


def _is_model(name: str) -> bool:
    return any(f.name == name for f in CoinConfig._meta.concrete_fields)


admin.site.unregister(CoinConfig)
admin.site.register(CoinConfig, CoinSettingsAdmin)


@admin.register(CoinBreaker)
class CoinBreakerAdmin(_BreakerActions, ReadOnlyAdmin):
    """Breakers ever tripped (trip a coin's from the Coins list); a tripped one is cleared by an approved proposal."""

    list_display = (
        "coin",
        "tripped",
        "trip_count",
        "source",
        "reason",
        "tripped_at",
        "tripped_by",
        "last_tripped_at",
        "cleared_at",
        "cleared_by",
        "clear_remark",
    )
    list_filter = ("tripped", "source")
    list_select_related = ("tripped_by", "cleared_by")
    actions = ["trip_breaker", "propose_breaker_clear"]

    @admin.action(description="Trip the circuit breaker again", permissions=["trip"])
    def trip_breaker(self, request: HttpRequest, queryset: QuerySet[CoinBreaker]) -> HttpResponse | None:
        return _trip(self, request, list(queryset.order_by("id").values_list("coin_id", flat=True)))

    @admin.action(description="Propose to clear the circuit breaker", permissions=["clear"])
    def propose_breaker_clear(self, request: HttpRequest, queryset: QuerySet[CoinBreaker]) -> HttpResponse | None:
        return _propose_clear(self, request, list(queryset.order_by("id").values_list("coin_id", flat=True)))


@admin.register(BreakerLog)
class BreakerLogAdmin(ReadOnlyAdmin):
    list_display = ("create_time", "coin", "action", "source", "reason", "user")
    list_filter = ("action", "source", "coin")
    list_select_related = ("user",)
    date_hierarchy = "create_time"


# --- blacklist ---------------------------------------------------------------------------------------


class BlacklistProposeForm(forms.Form):
    chain_id = forms.ChoiceField(label="Chain")
    addresses = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "cols": 70}),
        help_text="One address per line. Every address is checked for the chain; one bad address refuses them all.",
    )
    remark = forms.CharField(
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Why (a sanctions list, a case number): kept on each entry and on the proposal.",
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        chains = sorted(set(CoinConfig.objects.values_list("chain_id", flat=True)))
        self.fields["chain_id"].choices = [(c, c) for c in chains]

    def clean(self) -> dict:
        data = super().clean()
        if "chain_id" in data and "addresses" in data:
            lines = [f"{data['chain_id']},{line.strip()}" for line in data["addresses"].splitlines() if line.strip()]
            try:
                data["entries"] = services.blacklist_lines_parse(lines)
            except services.BadBlacklistLine as bad:
                raise forms.ValidationError(bad.message) from None
            if not data["entries"]:
                raise forms.ValidationError("Give at least one address.")
        return data


@admin.register(BlacklistAddress)
class BlacklistAddressAdmin(ReadOnlyAdmin):
    """
    Addresses no withdrawal may pay. Additions (the button above the list, or blacklist_import) and
    removals (the action) are proposals a second person approves.
    """

    list_display = ("chain_id", "address", "reason", "proposed_by", "approved_by", "create_time")
    list_filter = ("chain_id",)
    search_fields = ("=address", "reason")
    list_select_related = ("proposed_by", "approved_by")
    actions = ["propose_remove"]
    change_list_template = "admin/controls/blacklistaddress/change_list.html"

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(services.BLACKLIST_PERMISSION)

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.propose_view)
        return [path("propose/", view, name="controls_blacklistaddress_propose"), *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        extra = {**(extra_context or {}), "may_manage": self.has_manage_permission(request)}
        return super().changelist_view(request, extra)

    def propose_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_manage_permission(request):
            raise PermissionDenied
        form = BlacklistProposeForm(request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            try:
                change = services.blacklist_propose_add(
                    entries=form.cleaned_data["entries"], user=request.user, reason=form.cleaned_data["remark"]
                )
            except WalletError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(
                    request,
                    f"Proposal #{change.pk} ({change.summary}) waits for a second person's approval.",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:controls_blacklistaddress_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Propose addresses to blacklist",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/controls/form_page.html", context)

    @admin.action(description="Propose to take the selected addresses off the blacklist", permissions=["manage"])
    def propose_remove(self, request: HttpRequest, queryset: QuerySet[BlacklistAddress]) -> HttpResponse | None:
        rows = list(queryset.order_by("id"))
        form = RemarkForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            try:
                change = services.blacklist_propose_remove(
                    entry_ids=[row.id for row in rows], user=request.user, reason=form.cleaned_data["remark"]
                )
            except WalletError as error:
                self.message_user(request, error.message, messages.WARNING)
            else:
                self.message_user(
                    request, f"Proposal #{change.pk} waits for a second person's approval.", messages.SUCCESS
                )
            return None
        return remark_page(
            self,
            request,
            action="propose_remove",
            title="Propose to take addresses off the blacklist",
            explanation="They stay blacklisted until a second person with the permission approves the proposal.",
            rows=rows,
            form=form,
        )


# --- address books (the users' own; shown to support) ------------------------------------------------


@admin.register(AddressBookEntry)
class AddressBookEntryAdmin(ReadOnlyAdmin):
    list_display = ("user", "chain_id", "address", "label", "create_time", "usable_at")
    list_filter = ("chain_id",)
    search_fields = ("=user__id", "user__username", "=address")
    list_select_related = ("user",)


@admin.register(AddressBookPolicy)
class AddressBookPolicyAdmin(ReadOnlyAdmin):
    list_display = ("user", "book_only", "release_at", "update_time")
    list_filter = ("book_only",)
    search_fields = ("=user__id", "user__username")
    list_select_related = ("user",)


# --- proposals -----------------------------------------------------------------------------------------


class DecisionForm(RemarkForm):
    def __init__(self, *args: object, required: bool, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["remark"].required = required
        self.fields["remark"].help_text = "Required: why it is rejected." if required else "Optional: what you checked."


@admin.register(SettingsChange)
class SettingsChangeAdmin(ReadOnlyAdmin):
    """Four eyes: proposals wait here for a second person with the change's permission to approve or reject them."""

    list_display = (
        "id",
        "status",
        "kind",
        "summary",
        "reason",
        "proposed_by",
        "proposed_at",
        "decided_by",
        "decided_at",
        "decision_remark",
    )
    list_filter = ("status", "kind")
    search_fields = ("target", "summary", "reason", "proposed_by__username", "decided_by__username")
    list_select_related = ("proposed_by", "decided_by")
    readonly_fields = [f.name for f in SettingsChange._meta.fields if f.name != "open_key"]
    exclude = ("open_key",)
    date_hierarchy = "proposed_at"
    actions = ["approve", "reject"]

    def has_decide_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(proposals.DECIDE_PERMISSION)

    @admin.action(description="Approve the selected proposals (applies them)", permissions=["decide"])
    def approve(self, request: HttpRequest, queryset: QuerySet[SettingsChange]) -> HttpResponse | None:
        return self._decide(request, queryset, approving=True)

    @admin.action(description="Reject the selected proposals", permissions=["decide"])
    def reject(self, request: HttpRequest, queryset: QuerySet[SettingsChange]) -> HttpResponse | None:
        return self._decide(request, queryset, approving=False)

    def _decide(
        self, request: HttpRequest, queryset: QuerySet[SettingsChange], *, approving: bool
    ) -> HttpResponse | None:
        pending = list(queryset.filter(status=ChangeStatus.PENDING).order_by("id"))
        form = DecisionForm(request.POST if "apply" in request.POST else None, required=not approving)
        if "apply" in request.POST and form.is_valid():
            remark = form.cleaned_data["remark"]
            for change in pending:
                try:
                    if approving:
                        done = proposals.change_approve(change_id=change.id, user=request.user, remark=remark)
                    else:
                        done = proposals.change_reject(change_id=change.id, user=request.user, remark=remark)
                except WalletError as error:  # their own, decided meanwhile, without the permission
                    self.message_user(request, f"#{change.pk}: {error.message}", messages.WARNING)
                    continue
                self.log_change(request, done, f"{done.get_status_display()}: {remark}" if remark else done.status)
                level = messages.SUCCESS if done.status != ChangeStatus.STALE else messages.WARNING
                note = f" — {done.decision_remark}" if done.status == ChangeStatus.STALE else ""
                self.message_user(request, f"#{done.pk} {done.summary}: {done.get_status_display()}{note}", level)
            return None
        return remark_page(
            self,
            request,
            action="approve" if approving else "reject",
            title="Approve proposed changes" if approving else "Reject proposed changes",
            explanation=(
                "Approving applies each change now, if its target still holds the values it was proposed against "
                "(otherwise it is marked outdated and nothing changes). You cannot approve your own proposal."
                if approving
                else "Nothing of these proposals is applied; the proposer may withdraw their own this way."
            ),
            rows=pending,
            form=form,
        )
