"""Balances, flows and the outbox are shown, never edited: money changes only through services."""

from django.contrib import admin

from assets.models import Balance, ConsumedMessage, EventRelayLease, EventRelayMember, Flow, OutboxMessage
from wallet_project.admin import ReadOnlyAdmin


@admin.register(Balance)
class BalanceAdmin(ReadOnlyAdmin):
    list_display = ("user", "coin", "available", "frozen", "debt", "update_time")
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
        "amount",
        "balance_after",
        "frozen_amount",
        "frozen_after",
        "debt_amount",
        "debt_after",
        "biz_ref",
        "create_time",
    )
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
