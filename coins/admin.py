from django.contrib import admin
from django.http import HttpRequest

from coins import services as coins_services
from coins.models import CoinConfig


@admin.register(CoinConfig)
class CoinConfigAdmin(admin.ModelAdmin):
    list_display = (
        "coin_id",
        "chain_id",
        "decimals",
        "status",
        "recharge_enabled",
        "withdraw_enabled",
        "required_confirmations",
        "min_withdraw_amount",
        "max_withdraw_amount",
        "withdraw_audit_threshold",
        "withdraw_daily_limit",
        "sort_order",
    )
    list_filter = ("chain_id", "status", "recharge_enabled", "withdraw_enabled")
    search_fields = ("coin_id", "coin_name", "coin_symbol", "contract_address")
    readonly_fields = ("create_time", "update_time")
    ordering = ("sort_order", "id")

    def save_model(self, request: HttpRequest, obj: CoinConfig, form, change: bool) -> None:
        coins_services.coin_save(coin=obj, changed_fields=list(form.changed_data) if change else None)

    def has_delete_permission(self, request: HttpRequest, obj: CoinConfig | None = None) -> bool:
        # Deposits, withdrawals and balances refer to coins; switch a coin off instead.
        return False
