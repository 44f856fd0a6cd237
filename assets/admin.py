"""Balances, flows and the outbox are shown, never edited: money changes only through services."""

from django.contrib import admin

from assets.models import (
    Balance,
    ConsumedMessage,
    EventRelayLease,
    EventRelayMember,
    Flow,
    HouseBalance,
    HouseFlow,
    OutboxMessage,
)
from wallet_project.admin import ReadOnlyAdmin, amount_column


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ("user", "coin", "available_shown", "frozen_shown", "debt_shown", "update_time")
    available_shown = amount_column("available", "available")
    frozen_shown = amount_column("frozen", "frozen")
    debt_shown = amount_column("debt", "debt")
    list_filter = ("coin",)
    search_fields = ("user__username", "=user__id")
    list_select_related = ("user",)


@admin.register(Flow)
class FlowAdmin(ReadOnlyAdmin):
    list_display = (
        "flow_no",
        "user",
        "coin",
        "business_type",
        "amount_shown",
        "balance_after_shown",
        "frozen_after_shown",
        "biz_ref",
        "create_time",
    )
    amount_shown = amount_column("amount", "amount")
    balance_after_shown = amount_column("balance_after", "balance after")
    # The frozen change is on the flow's page: a fourth 18-decimal column would not fit at 1400 px.
    frozen_after_shown = amount_column("frozen_after", "frozen after")
    list_filter = ("coin", "business_type")
    search_fields = ("flow_no", "biz_ref", "ref_tx_hash", "user__username")
    list_select_related = ("user",)
    date_hierarchy = "create_time"


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    list_display = ("message_id", "topic", "tags", "keys", "partition_key", "status", "create_time", "sent_time")
    list_filter = ("topic", "tags", "status")
    search_fields = ("message_id", "keys")


@admin.register(EventRelayLease)
class EventRelayLeaseAdmin(ReadOnlyAdmin):
    """Which relay process publishes which outbox partition, and until when."""

    list_display = ("partition_no", "owner", "expires_at")
    search_fields = ("owner",)
    ordering = ("partition_no",)


@admin.register(EventRelayMember)
class EventRelayMemberAdmin(ReadOnlyAdmin):
    """Live relay processes (they share the partitions fairly)."""

    list_display = ("owner", "expires_at")
    search_fields = ("owner",)


@admin.register(ConsumedMessage)
class ConsumedMessageAdmin(ReadOnlyAdmin):
    """Messages in-process consumers have handled (deduplication)."""

    list_display = ("consumer", "message_id", "create_time")
    list_filter = ("consumer",)
    search_fields = ("=message_id",)
    date_hierarchy = "create_time"


@admin.register(HouseBalance)
class HouseBalanceAdmin(ReadOnlyAdmin):
    list_display = ("account", "coin", "balance_shown", "update_time")
    balance_shown = amount_column("balance", "balance")
    list_filter = ("coin", "account")


@admin.register(HouseFlow)
class HouseFlowAdmin(ReadOnlyAdmin):
    list_display = (
        "flow_no",
        "account",
        "coin",
        "business_type",
        "amount_shown",
        "balance_after_shown",
        "biz_ref",
        "create_time",
    )
    amount_shown = amount_column("amount", "amount")
    balance_after_shown = amount_column("balance_after", "balance after")
    list_filter = ("coin", "account", "business_type")
    search_fields = ("flow_no", "biz_ref", "ref_tx_hash")
    date_hierarchy = "create_time"
