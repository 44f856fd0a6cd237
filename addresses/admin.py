from django.contrib import admin
from django.http import HttpRequest

from addresses.models import WalletAddress


@admin.register(WalletAddress)
class WalletAddressAdmin(admin.ModelAdmin):
    list_display = ("address", "chain_id", "coin", "address_type", "wallet_type", "user", "balance", "status",
                    "derivation_path", "create_time")
    list_filter = ("chain_id", "address_type", "wallet_type", "status")
    search_fields = ("address", "=user__id", "user__username")
    list_select_related = ("user",)
    readonly_fields = [f.name for f in WalletAddress._meta.fields if f.name != "status"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WalletAddress | None = None) -> bool:
        return False
