"""Chain sending state in the back-office: shown, never edited (nonces move only by allocation)."""

from django.contrib import admin

from chains.models import NonceCursor
from wallet_project.admin import ReadOnlyAdmin


@admin.register(NonceCursor)
class NonceCursorAdmin(ReadOnlyAdmin):
    list_display = ("chain_id", "address", "next_nonce", "update_time")
    list_filter = ("chain_id",)
    search_fields = ("address",)
