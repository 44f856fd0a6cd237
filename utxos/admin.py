"""The UTXO set in the back-office: shown, never edited (the scanner and payouts write it through services)."""

from django.contrib import admin

from utxos.models import BtcUtxo
from wallet_project.admin import ReadOnlyAdmin


@admin.register(BtcUtxo)
class BtcUtxoAdmin(ReadOnlyAdmin):
    list_display = (
        "txid",
        "vout",
        "value_sats",
        "kind",
        "wallet_type",
        "block_height",
        "orphaned",
        "spent_txid",
        "spent_height",
        "locked_by",
        "pending_txid",
    )
    list_filter = ("kind", "wallet_type", "orphaned")
    search_fields = ("txid", "spent_txid", "locked_by", "pending_txid")
    raw_id_fields = ("address",)
