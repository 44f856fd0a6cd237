from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from monitoring import services as monitoring_services
from monitoring.models import Alert
from wallet_project.admin import ReadOnlyAdmin, RemarkForm, remark_page
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
    )
    list_filter = (OpenFilter, "severity", "kind")
    search_fields = ("kind", "subject", "message")
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
                "Acknowledging closes an alert: it stops counting here, and the next occurrence of the "
                "same problem opens a new one. Say what was done about it."
            ),
            rows=alerts,
            form=form,
        )
