from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from monitoring import services as monitoring_services
from monitoring.models import Alert
from wallet_project.errors import WalletError


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("open", "open"), ("acknowledged", "acknowledged"))

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(acknowledged_at__isnull=True)
        if self.value() == "acknowledged":
            return queryset.filter(acknowledged_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = (
        "severity",
        "kind",
        "subject",
        "count",
        "first_seen",
        "last_seen",
        "acknowledged_by",
        "acknowledged_at",
    )
    list_filter = (OpenFilter, "severity", "kind")
    search_fields = ("kind", "subject", "message")
    readonly_fields = [f.name for f in Alert._meta.fields]
    actions = ["acknowledge"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Alert | None = None) -> bool:
        return False

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Alert]) -> None:
        done = 0
        for alert in queryset.order_by("id"):
            try:
                monitoring_services.alert_acknowledge(alert_id=alert.id, user=request.user)
                done += 1
            except WalletError as error:
                self.message_user(request, f"Alert {alert.id}: {error.message}", messages.WARNING)
        self.message_user(request, f"{done} alert(s) acknowledged.", messages.SUCCESS)
