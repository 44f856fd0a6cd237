from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from recharges import hold_changes
from recharges import selectors as recharges_selectors
from recharges import services as recharges_services
from recharges.models import AccountHold, HoldStatus, RecentBlock, RechargeRecord, ScanCursor, TreasuryReceipt
from wallet_project.admin import ReadOnlyAdmin, amount_column, hash_column
from wallet_project.errors import WalletError


@admin.register(RechargeRecord)
class RechargeRecordAdmin(ReadOnlyAdmin):
    list_display = (
        "recharge_no",
        "user",
        "coin",
        "amount_shown",
        "status",
        "confirmations",
        "required_confirmations",
        "block_number",
        "tx_hash_shown",
        "log_index",
        "create_time",
        "confirm_time",
    )
    amount_shown = amount_column("amount", "amount")
    tx_hash_shown = hash_column("tx_hash", "tx hash")
    # BELOW_MINIMUM and RECHARGE_DISABLED deposits (recorded, not credited) are found by status.
    list_filter = ("status", "coin", "coin__chain_id", "create_time")
    search_fields = ("recharge_no", "tx_hash", "to_address", "from_address", "=user__id", "user__username")
    list_select_related = ("user",)
    readonly_fields = [f.name for f in RechargeRecord._meta.fields]
    date_hierarchy = "create_time"
    actions = ["rescan_blocks", "release"]

    def has_release_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("recharges.release_rechargerecord")

    @admin.action(
        description="Credit the selected held deposits after review (above maximum, recharge disabled)",
        permissions=["release"],
    )
    def release(self, request: HttpRequest, queryset: QuerySet[RechargeRecord]) -> HttpResponse | None:
        held = list(queryset.filter(status__in=recharges_services.RELEASABLE_STATUSES).order_by("id"))
        form = ReleaseForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for record in held:
                try:
                    recharges_services.deposit_release(
                        record_id=record.id,
                        operator=request.user.get_username(),
                        remark=form.cleaned_data["remark"],
                        now=timezone.now(),
                    )
                except WalletError as error:  # released meanwhile by someone else, or orphaned
                    self.message_user(request, f"{record.recharge_no}: {error}", messages.WARNING)
                else:
                    self.log_change(request, record, f"Credited after review: {form.cleaned_data['remark']}")
                    self.message_user(request, f"{record.recharge_no}: credited", messages.SUCCESS)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Credit held deposits after review",
            "form": form,
            "records": held,
            "skipped": queryset.count() - len(held),
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/recharges/release.html", context)

    def has_rescan_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("recharges.rescan_blocks")

    @admin.action(description="Rescan the blocks of the selected deposits (idempotent)", permissions=["rescan"])
    def rescan_blocks(self, request: HttpRequest, queryset: QuerySet[RechargeRecord]) -> None:
        # Each selected deposit's own block, not the span between them: two deposits years apart
        # would otherwise make one web request read the chain's history.
        for chain_id, heights in _heights_by_chain(queryset).items():
            blocks = sorted(set(heights))
            if len(blocks) > RESCAN_ACTION_MAX_BLOCKS:
                self.message_user(
                    request,
                    f"{chain_id}: {len(blocks)} blocks selected; rescan at most {RESCAN_ACTION_MAX_BLOCKS} at once "
                    "(or a range from the scan cursor's page)",
                    messages.ERROR,
                )
                continue
            for height in blocks:
                _rescan(self, request, chain_id=chain_id, from_height=height, to_height=height)


# Distinct blocks one "rescan the selected deposits" action reads.
RESCAN_ACTION_MAX_BLOCKS = 100


def _heights_by_chain(queryset: QuerySet[RechargeRecord]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for chain_id, height in queryset.exclude(block_number=None).values_list("coin__chain_id", "block_number"):
        found.setdefault(chain_id, []).append(height)
    return found


def _rescan(
    model_admin: admin.ModelAdmin, request: HttpRequest, *, chain_id: str, from_height: int, to_height: int
) -> None:
    result = recharges_services.deposits_rescan_range(
        chain_id=chain_id, from_height=from_height, to_height=to_height, now=timezone.now()
    )
    # Who rescanned what, and when (the admin history of the chain's cursor).
    cursor = ScanCursor.objects.filter(chain_id=chain_id).first()
    if cursor is not None:
        text = f"rescan of blocks {from_height}..{to_height}: {result.deposits} deposit(s) added"
        model_admin.log_change(request, cursor, text + (f", stopped: {result.error}" if result.error else ""))
    if result.error:
        model_admin.message_user(request, f"{chain_id}: rescan stopped: {result.error}", messages.ERROR)
    else:
        model_admin.message_user(
            request,
            f"{chain_id}: blocks {from_height}..{to_height}: {result.blocks} read, {result.deposits} deposits added",
            messages.SUCCESS,
        )


class ReleaseForm(forms.Form):
    remark = forms.CharField(
        max_length=150,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why these deposits may be credited (kept in the admin history and the ledger flow).",
    )


class RescanForm(forms.Form):
    from_height = forms.IntegerField(min_value=0)
    to_height = forms.IntegerField(min_value=0)

    def clean(self) -> dict:
        data = super().clean()
        if data.get("from_height") is not None and data.get("to_height") is not None:
            if data["from_height"] > data["to_height"]:
                raise forms.ValidationError("from must not be above to")
            if data["to_height"] - data["from_height"] >= recharges_services.RESCAN_MAX_BLOCKS:
                raise forms.ValidationError(f"at most {recharges_services.RESCAN_MAX_BLOCKS} blocks at once")
        return data


@admin.register(ScanCursor)
class ScanCursorAdmin(ReadOnlyAdmin):
    list_display = ("chain_id", "height", "tip_height", "tip_time", "version", "update_time")
    actions = ["rescan_range"]

    def has_rescan_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("recharges.rescan_blocks")

    @admin.action(description="Rescan a block range of the selected chain (idempotent)", permissions=["rescan"])
    def rescan_range(self, request: HttpRequest, queryset: QuerySet[ScanCursor]) -> HttpResponse | None:
        cursor = queryset.order_by("id").first()
        if cursor is None:
            return None
        form = RescanForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            _rescan(
                self,
                request,
                chain_id=cursor.chain_id,
                from_height=form.cleaned_data["from_height"],
                to_height=form.cleaned_data["to_height"],
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rescan blocks of {cursor.chain_id}",
            "form": form,
            "cursor": cursor,
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/recharges/rescan.html", context)


@admin.register(AccountHold)
class AccountHoldAdmin(ReadOnlyAdmin):
    """
    Reorg shortfalls: what a user owes after a credited deposit was orphaned (see recharges.shortfalls).

    A hold closes itself when the user's credits repay the debt. Ops close it otherwise, each way
    with its own permission and a remark: settle (the user paid it back off-system) or write off
    (the exchange takes the loss); each is a proposal that a second person with the permission
    approves (four eyes).
    """

    list_display = (
        "id",
        "user",
        "coin",
        "amount",
        "reversed_amount",
        "debt_amount",
        "status",
        "recharge",
        "create_time",
        "resolve_time",
        "resolved_by",
        "resolved_amount",
    )
    list_filter = ("status", "coin")
    search_fields = ("=user__id", "biz_ref")
    list_select_related = ("user", "recharge", "resolved_by")
    readonly_fields = [f.name for f in AccountHold._meta.fields]
    actions = ["settle", "write_off"]

    def has_settle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("recharges.settle_accounthold")

    def has_write_off_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("recharges.write_off_accounthold")

    @admin.action(
        description="Settle: the user paid the shortfall back off-system (proposed; a second person approves)",
        permissions=["settle"],
    )
    def settle(self, request: HttpRequest, queryset: QuerySet[AccountHold]) -> HttpResponse | None:
        return self._close(request, queryset, action="settle")

    @admin.action(
        description="Write off: the exchange takes the loss of the shortfall (proposed; a second person approves)",
        permissions=["write_off"],
    )
    def write_off(self, request: HttpRequest, queryset: QuerySet[AccountHold]) -> HttpResponse | None:
        return self._close(request, queryset, action="write_off")

    def _close(self, request: HttpRequest, queryset: QuerySet[AccountHold], *, action: str) -> HttpResponse | None:
        # Lifting a hold takes four eyes: each hold gets a proposal that a second person approves
        # under Risk controls → Proposed changes; nothing changes before that.
        holds = list(queryset.filter(status=HoldStatus.ACTIVE).select_related("user", "recharge").order_by("id"))
        form = ShortfallForm(request.POST if "apply" in request.POST else None)
        kind = hold_changes.SETTLE if action == "settle" else hold_changes.WRITE_OFF
        if "apply" in request.POST and form.is_valid():
            remark = form.cleaned_data["remark"]
            for hold in holds:
                try:
                    change = hold_changes.account_hold_propose_close(
                        hold_id=hold.id, kind=kind, user=request.user, remark=remark, now=timezone.now()
                    )
                except WalletError as error:  # closed meanwhile, or a proposal for it waits already
                    self.message_user(request, f"hold {hold.id}: {error}", messages.WARNING)
                    continue
                self.log_change(request, hold, f"Proposed ({change.summary}), proposal #{change.pk}: {remark}")
                self.message_user(
                    request,
                    f"hold {hold.id}: proposal #{change.pk} waits for a second person's approval (Proposed changes)",
                    messages.SUCCESS,
                )
            return None
        debts = recharges_selectors.account_hold_debts(holds=holds)
        context = {
            **self.admin_site.each_context(request),
            "title": "Settle reorg shortfalls" if action == "settle" else "Write off reorg shortfalls",
            "form": form,
            "rows": [(hold, debts[hold.id]) for hold in holds],
            "action": action,
            "skipped": queryset.count() - len(holds),
            "opts": self.model._meta,
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/recharges/shortfall.html", context)


class ShortfallForm(forms.Form):
    remark = forms.CharField(
        max_length=255,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why (a payment reference, a ticket): kept on the hold, in the ledger flow and the admin history.",
    )


@admin.register(RecentBlock)
class RecentBlockAdmin(ReadOnlyAdmin):
    """The block hashes the scanner keeps per chain to notice a reorg."""

    list_display = ("chain_id", "height", "hash", "parent_hash", "create_time")
    list_filter = ("chain_id",)
    search_fields = ("=hash", "=height")
    ordering = ("chain_id", "-height")


@admin.register(TreasuryReceipt)
class TreasuryReceiptAdmin(ReadOnlyAdmin):
    """Money from outside at the exchange's own addresses, booked to the house (treasury): to look at only."""

    list_display = ("id", "coin", "amount", "to_address", "from_address", "block_number", "status", "book_time")
    list_filter = ("coin", "status")
    search_fields = ("tx_hash", "to_address", "from_address")
    readonly_fields = [field.name for field in TreasuryReceipt._meta.fields]
