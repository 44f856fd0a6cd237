"""Reads of the relay: pending outbox rows of some partitions, the relay's lag."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from django.db.models import BigIntegerField, TextField
from django.db.models.functions import Abs, Cast, Mod

from assets.models import OutboxMessage, OutboxStatus
from assets.relay.brokers import OutgoingMessage


def outbox_pending_batch(
    *, partitions: Collection[int], partition_count: int, limit: int, exclude_ids: Collection[int] = ()
) -> list[OutgoingMessage]:
    """
    Return up to limit pending events of the given partitions, oldest (lowest id) first.

    Selected by status, never by "id above the last one seen": a transaction that commits late
    with a lower id is still found. Within one user (one partition) rows come out in id order,
    which is their commit order for one balance (the balance row lock serialises them).
    exclude_ids: rows already published and awaiting their confirms.
    """
    if not partitions:
        return []
    rows = OutboxMessage.objects.filter(status=OutboxStatus.PENDING)
    if len(set(partitions)) < partition_count:
        rows = rows.annotate(
            relay_partition=Mod(Abs(Cast("partition_key", BigIntegerField())), partition_count)
        ).filter(relay_partition__in=sorted(set(partitions)))
    if exclude_ids:
        rows = rows.exclude(id__in=list(exclude_ids))
    # The stored JSON text goes out as it is: no decoding and re-encoding per row.
    rows = rows.annotate(body_text=Cast("payload", TextField())).order_by("id")
    return [
        OutgoingMessage(
            outbox_id=outbox_id,
            message_id=message_id,
            topic=topic,
            tags=tags,
            keys=keys,
            partition_key=partition_key,
            body=body_text,
        )
        for outbox_id, message_id, topic, tags, keys, partition_key, body_text in rows.values_list(
            "id", "message_id", "topic", "tags", "keys", "partition_key", "body_text"
        )[:limit]
    ]


def outbox_lag_seconds(*, now: datetime) -> float:
    """Return the age in seconds of the oldest pending event, 0 when none is pending."""
    oldest = (
        OutboxMessage.objects.filter(status=OutboxStatus.PENDING).order_by("id").values_list("create_time", flat=True)
    ).first()
    if oldest is None:
        return 0.0
    return max(0.0, (now - oldest).total_seconds())


def outbox_pending_count() -> int:
    return OutboxMessage.objects.filter(status=OutboxStatus.PENDING).count()
