from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from monitoring import kinds
from monitoring import services as monitoring_services
from monitoring.models import Alert, AlertDelivery, BackupRun, ChainTip, HotBalance, ReconciliationRun
from wallet_project.admin import ReadOnlyAdmin, RemarkForm, remark_page
from wallet_project.errors import WalletError


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "open"), ("acknowledged", "acknowledged"), ("resolved", "resolved"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(acknowledged_at__isnull=True, resolved_at__isnull=True)
        if self.value() == "acknowledged":
            return queryset.filter(acknowledged_at__isnull=False)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


class DeliveryInline(admin.TabularInline):
    """Every delivery of the alert: channel, status, attempts, HTTP code, next try (read-only)."""

    model = AlertDelivery
    extra = 0
    can_delete = False
    fields = ("event", "channel", "status", "attempts", "http_status", "last_error", "next_attempt_at", "sent_at")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = (
        "severity",
        "kind",
        "subject",
        "count",
        "first_seen",
        "last_seen",
        "acknowledged_by",
        "acknowledged_at",
        "acknowledge_remark",
        "resolved_at",
    )
    list_filter = (OpenFilter, "severity", "kind")
    search_fields = ("kind", "subject", "message")
    readonly_fields = [f.name for f in Alert._meta.fields] + ["what_to_do"]
    inlines = [DeliveryInline]

    @admin.display(description="what to do")
    def what_to_do(self, obj: Alert) -> str:
        return kinds.what_to_do(obj.kind)

    actions = ["acknowledge"]

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("monitoring.acknowledge_alert")

    @admin.action(description="Acknowledge selected alerts (with a remark)", permissions=["acknowledge"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> HttpResponse | None:
        alerts = list(queryset.filter(acknowledged_at__isnull=True).order_by("id"))
        form = RemarkForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done = 0
            for alert in alerts:
                try:
                    monitoring_services.alert_acknowledge(
                        alert_id=alert.id, user=request.user, remark=form.cleaned_data["remark"]
                    )
                    done += 1
                except WalletError as error:
                    self.message_user(request, f"Alert {alert.id}: {error.message}", messages.WARNING)
            self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)
            return None
        return remark_page(
            self,
            request,
            action="acknowledge",
            title="Acknowledge alerts",
            explanation=(
                "Acknowledging says someone owns the problem: nobody is notified again. An alert whose "
                "condition a check follows keeps counting repeats until the condition clears; any other "
                "alert opens anew at its next occurrence. Say what was done about it."
            ),
            rows=alerts,
            form=form,
        )


@admin.register(AlertDelivery)
class AlertDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: what was sent where, how many attempts, what the receiver answered (read-only)."""

    list_display = (
        "id",
        "alert",
        "event",
        "channel",
        "status",
        "attempts",
        "http_status",
        "next_attempt_at",
        "sent_at",
    )
    list_filter = ("status", "channel", "event")
    search_fields = ("alert__kind", "alert__subject")
    readonly_fields = [f.name for f in AlertDelivery._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AlertDelivery | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AlertDelivery | None = None) -> bool:
        return False


class _Observed(admin.ModelAdmin):
    """What the monitoring checks keep (tips seen, hot balances read, backups made): to look at only."""

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(ChainTip)
class ChainTipAdmin(_Observed):
    list_display = ("chain_id", "tip_height", "changed_at", "checked_at")


@admin.register(HotBalance)
class HotBalanceAdmin(_Observed):
    list_display = ("chain_id", "coin_id", "address", "balance", "error", "read_at")
    list_filter = ("chain_id", "coin_id")
    search_fields = ("address",)


@admin.register(BackupRun)
class BackupRunAdmin(_Observed):
    list_display = ("kind", "name", "size_bytes", "started_at", "finished_at", "location")
    list_filter = ("kind",)


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(_Observed):
    """Every reconciliation run with its figures; read-only (runs are written once by the job)."""

    list_display = (
        "id",
        "coin",
        "status",
        "full",
        "difference",
        "ledger_mismatches",
        "chain_height",
        "scan_height",
        "started_at",
    )
    list_filter = ("coin", "status", "full")
