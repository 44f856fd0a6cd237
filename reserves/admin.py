from django.contrib import admin

from reserves.models import ReserveAddress, ReserveSnapshot, ReserveTree
from wallet_project.admin import ReadOnlyAdmin, ReadOnlyInline


class ReserveTreeInline(ReadOnlyInline):
    model = ReserveTree
    # Never the salt secret or the packed nodes: the secret would unmask every user's leaf.
    fields = ("coin", "root", "total_base_units", "leaf_count", "depth", "users_in_debt", "debts_excluded_base_units")
    readonly_fields = fields


class ReserveAddressInline(ReadOnlyInline):
    model = ReserveAddress
    fields = ("chain_id", "address", "address_type", "height", "block_hash", "watch_only", "signed_by", "signed_at")
    readonly_fields = fields


@admin.register(ReserveSnapshot)
class ReserveSnapshotAdmin(ReadOnlyAdmin):
    """Snapshots are taken by `reserves_snapshot`; cold signatures arrive by `reserves_import_signature`."""

    list_display = ("id", "taken_at", "snapshot_root", "published_at")
    fields = ("taken_at", "snapshot_root", "statement", "published_at")
    readonly_fields = fields
    inlines = [ReserveTreeInline, ReserveAddressInline]
