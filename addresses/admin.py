from django.contrib import admin
from django.http import HttpRequest

from addresses.models import HotWalletCursor, KeySecret, WalletAddress


@admin.register(WalletAddress)
class WalletAddressAdmin(admin.ModelAdmin):
    list_display = (
        "address",
        "chain_id",
        "coin",
        "address_type",
        "wallet_type",
        "user",
        "balance",
        "status",
        "derivation_path",
        "create_time",
    )
    list_filter = ("chain_id", "address_type", "wallet_type", "status")
    search_fields = ("address", "=user__id", "user__username")
    list_select_related = ("user", "coin")
    readonly_fields = [f.name for f in WalletAddress._meta.fields if f.name != "status"]
    # A pool holds hundreds of thousands of rows: no full COUNT(*) per page.
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WalletAddress | None = None) -> bool:
        return False


@admin.register(KeySecret)
class KeySecretAdmin(admin.ModelAdmin):
    """The key vault, shown by ids, versions and public fingerprints only: never a secret or its ciphertext."""

    list_display = (
        "id",
        "key_id",
        "kind",
        "chain_id",
        "purpose",
        "label",
        "fingerprint",
        "account_path",
        "next_index",
        "key_version",
        "create_time",
        "rotate_time",
    )
    list_filter = ("kind", "chain_id", "purpose", "key_version")
    # Listed, not excluded: a field added to the model later stays hidden until someone adds it here.
    fields = (
        "key_id",
        "kind",
        "chain_id",
        "purpose",
        "label",
        "fingerprint",
        "account_path",
        "next_index",
        "key_version",
        "create_time",
        "rotate_time",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest):
        # The ciphertext never even leaves the database for an admin page.
        return super().get_queryset(request).defer("ciphertext", "account_xpub")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: KeySecret | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: KeySecret | None = None) -> bool:
        return False


@admin.register(HotWalletCursor)
class HotWalletCursorAdmin(admin.ModelAdmin):
    list_display = ("chain_id", "wallet_type", "last_address_id", "update_time")
    readonly_fields = ("chain_id", "wallet_type", "last_address_id", "update_time")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
