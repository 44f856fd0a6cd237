from django.contrib import admin
from django.http import HttpRequest

from wallet_project.admin import ReadOnlyAdmin
from withdrawals.models import WithdrawAuditLog, WithdrawRecord


class WithdrawAuditLogInline(admin.TabularInline):
    model = WithdrawAuditLog
    extra = 0
    can_delete = False
    readonly_fields = ("auditor", "action", "from_status", "to_status", "remark", "create_time")

    def has_add_permission(self, request: HttpRequest, obj: WithdrawRecord | None = None) -> bool:
        return False


@admin.register(WithdrawRecord)
class WithdrawRecordAdmin(admin.ModelAdmin):
    list_display = ("withdraw_no", "user", "coin", "amount", "fee", "status", "to_address", "audit_user", "create_time")
    list_filter = ("coin", "status")
    search_fields = ("withdraw_no", "tx_hash", "to_address", "=user__id")
    list_select_related = ("user",)
    readonly_fields = [f.name for f in WithdrawRecord._meta.fields]
    inlines = [WithdrawAuditLogInline]
    date_hierarchy = "create_time"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WithdrawRecord | None = None) -> bool:
        return False


@admin.register(WithdrawAuditLog)
class WithdrawAuditLogAdmin(ReadOnlyAdmin):
    """Every decision on every withdrawal, for auditors: append-only."""

    list_display = ("withdraw", "action", "from_status", "to_status", "auditor", "remark", "create_time")
    list_filter = ("action", "to_status")
    search_fields = ("withdraw__withdraw_no", "auditor__username")
    list_select_related = ("withdraw", "auditor")
    date_hierarchy = "create_time"
