from django.contrib import admin
from django.http import HttpRequest

from recharges.models import RechargeRecord


@admin.register(RechargeRecord)
class RechargeRecordAdmin(admin.ModelAdmin):
    list_display = (
        "recharge_no",
        "user",
        "coin",
        "amount",
        "status",
        "confirmations",
        "required_confirmations",
        "block_number",
        "create_time",
        "confirm_time",
    )
    list_filter = ("coin", "status")
    search_fields = ("recharge_no", "tx_hash", "to_address", "from_address", "=user__id")
    list_select_related = ("user",)
    readonly_fields = [f.name for f in RechargeRecord._meta.fields]
    date_hierarchy = "create_time"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: RechargeRecord | None = None) -> bool:
        return False
