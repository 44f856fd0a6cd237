import copy

from django import forms
from django.contrib import admin
from django.contrib.admin.options import csrf_protect_m
from django.forms.models import construct_instance
from django.http import HttpRequest

from coins import selectors as coins_selectors
from coins import services as coins_services
from coins.models import CoinConfig


class CoinConfigForm(forms.ModelForm):
    # The admin builds the form's Meta (model and fields) from CoinConfigAdmin.

    def clean(self) -> dict:
        data = super().clean()
        # The rule coin_save applies, shown on the field instead of as a refused Save.
        candidate = construct_instance(self, copy.copy(self.instance))
        for name, message in coins_selectors.coin_config_errors(coin=candidate).items():
            self.add_error(name if name in self.fields else None, message)
        return data


@admin.register(CoinConfig)
class CoinConfigAdmin(admin.ModelAdmin):
    """Coin settings: the one table edited in a form; Save goes through coin_save (row locked, changed fields only)."""

    form = CoinConfigForm
    list_display = (
        "coin_id",
        "chain_id",
        "is_native",
        "contract_address",
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
    list_filter = ("chain_id", "is_native", "status", "recharge_enabled", "withdraw_enabled")
    search_fields = ("coin_id", "coin_name", "coin_symbol", "contract_address")
    readonly_fields = ("create_time", "update_time")
    ordering = ("sort_order", "id")

    def get_readonly_fields(self, request: HttpRequest, obj: CoinConfig | None = None) -> tuple[str, ...]:
        # Set when the coin is added, shown afterwards: coin_save refuses to change them.
        identity = coins_services.IDENTITY_FIELDS if obj is not None else ()
        return (*identity, *self.readonly_fields)

    @csrf_protect_m
    def changeform_view(self, request: HttpRequest, object_id=None, form_url: str = "", extra_context=None):
        # Django wraps a POST in a transaction of its own; coin_save is a durable transaction
        # (it locks the row) and cannot nest in it.
        return self._changeform_view(request, object_id, form_url, extra_context)

    def save_model(self, request: HttpRequest, obj: CoinConfig, form, change: bool) -> None:
        coins_services.coin_save(coin=obj, changed_fields=list(form.changed_data) if change else None)

    def has_delete_permission(self, request: HttpRequest, obj: CoinConfig | None = None) -> bool:
        # Deposits, withdrawals and balances refer to coins; switch a coin off instead.
        return False
