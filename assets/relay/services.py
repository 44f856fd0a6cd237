"""
Writes of the relay: partition leases, marking events sent, pruning old events.

Leases: each running relay keeps a member row alive and owns at most ceil(partitions / live
relays) partition leases. Lease changes happen under a lock of all lease rows (a few dozen rows,
a short transaction, no network I/O), so two relays never own one partition at the same time.
A relay that stops renewing loses its partitions when its lease expires; one that sees more
relays alive gives up its surplus, which the newcomers then claim.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime, timedelta

from django.db import transaction

from assets.models import EventRelayLease, EventRelayMember, OutboxMessage, OutboxStatus

# Member rows of relays that stopped without releasing are deleted by outbox_prune after this.
_MEMBER_FORGET_SECONDS = 3600


def relay_leases_refresh(*, owner: str, partition_count: int, lease_seconds: float, now: datetime) -> list[int]:
    """
    Renew this relay's membership and its fair share of partition leases; return the partitions it owns.

    Keeps (renews) the partitions it already holds up to its share, releases the rest, and claims
    free or expired partitions up to its share.
    """
    if EventRelayLease.objects.filter(partition_no__lt=partition_count).count() < partition_count:
        # First run of this partition count: its own transaction, before the lease rows are locked.
        with transaction.atomic(durable=True):
            EventRelayLease.objects.bulk_create(
                [EventRelayLease(partition_no=p, owner="", expires_at=now) for p in range(partition_count)],
                ignore_conflicts=True,
            )
    with transaction.atomic(durable=True):
        return _leases_share(owner=owner, partition_count=partition_count, lease_seconds=lease_seconds, now=now)


def _leases_share(*, owner: str, partition_count: int, lease_seconds: float, now: datetime) -> list[int]:
    until = now + timedelta(seconds=lease_seconds)
    if not EventRelayMember.objects.filter(owner=owner).update(expires_at=until):
        EventRelayMember.objects.create(owner=owner, expires_at=until)
    live = EventRelayMember.objects.filter(expires_at__gt=now).count()
    share = math.ceil(partition_count / max(1, live))

    leases = list(
        EventRelayLease.objects.select_for_update().filter(partition_no__lt=partition_count).order_by("partition_no")
    )
    held = [lease.partition_no for lease in leases if lease.owner == owner and lease.expires_at > now]
    # An expired lease is free, ours included: taking it back is as safe as taking any free one.
    free = [lease.partition_no for lease in leases if not lease.owner or lease.expires_at <= now]
    keep = held[:share]
    release = held[share:]
    claim = sorted(free)[: max(0, share - len(keep))]
    mine = sorted(keep + claim)
    if mine:
        EventRelayLease.objects.filter(partition_no__in=mine).update(owner=owner, expires_at=until)
    if release:
        EventRelayLease.objects.filter(partition_no__in=release, owner=owner).update(owner="", expires_at=now)
    return mine


@transaction.atomic(durable=True)
def relay_leases_release(*, owner: str, now: datetime) -> None:
    """Give up every lease and the membership of this relay (clean shutdown), so others take over at once."""
    EventRelayLease.objects.filter(owner=owner).update(owner="", expires_at=now)
    EventRelayMember.objects.filter(owner=owner).delete()


@transaction.atomic(durable=True)
def outbox_mark_sent(*, outbox_ids: Collection[int], now: datetime) -> int:
    """Mark the broker-confirmed events sent, in one UPDATE; return how many rows changed."""
    if not outbox_ids:
        return 0
    return OutboxMessage.objects.filter(id__in=list(outbox_ids), status=OutboxStatus.PENDING).update(
        status=OutboxStatus.SENT, sent_time=now
    )


def outbox_prune(*, now: datetime, retention_days: int, chunk: int = 5000) -> int:
    """
    Delete sent events older than retention_days, in chunks of short transactions; return the count.

    Pending events are never deleted, however old. Also forgets relays that died an hour ago.
    """
    with transaction.atomic(durable=True):
        EventRelayMember.objects.filter(expires_at__lt=now - timedelta(seconds=_MEMBER_FORGET_SECONDS)).delete()
    cutoff = now - timedelta(days=retention_days)
    deleted = 0
    while True:
        with transaction.atomic(durable=True):
            ids = list(
                OutboxMessage.objects.filter(status=OutboxStatus.SENT, sent_time__lt=cutoff)
                .order_by("id")
                .values_list("id", flat=True)[:chunk]
            )
            if not ids:
                return deleted
            deleted += OutboxMessage.objects.filter(id__in=ids, status=OutboxStatus.SENT).delete()[0]
