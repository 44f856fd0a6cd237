"""
Consumer-side deduplication of events. Delivery is at-least-once: after a relay crash or a broken
connection a message can arrive twice, so every consumer must skip message_ids it has handled.

Two helpers:

- message_claim (database): call it inside the transaction that applies the message's effect. The
  unique (consumer, message_id) row commits with the effect or rolls back with it, so a message is
  applied exactly once even if the consumer crashes at any line. Use it for anything that moves
  money or state.
- message_seen_first (Redis SET NX with a TTL): for consumers without a database transaction
  (caches, notifications). A crash after the SET and before the effect loses that message for
  this consumer, so it is not for money.

Per-user order: a relay never publishes a user's later event before an earlier one, and after a
failure it republishes from the oldest unconfirmed event; a consumer that skips seen message_ids
therefore sees each user's events once and in order. ASSET_CHANGE bodies also chain
(balance_before of one equals balance_after of the previous for the same user and coin).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django_redis import get_redis_connection

from assets.models import ConsumedMessage


def message_claim(*, consumer: str, message_id: str) -> bool:
    """
    Record that consumer handles message_id; return False if it was handled before.

    Joins the caller's transaction (call it in the transaction that applies the effect).
    """
    try:
        with transaction.atomic():  # a savepoint: a duplicate must not doom the caller's transaction
            ConsumedMessage.objects.create(consumer=consumer, message_id=message_id)
    except IntegrityError:
        return False
    return True


def consumed_prune(*, now: datetime, ttl_seconds: int | None = None) -> int:
    """Delete dedupe records older than ttl_seconds (EVENT_DEDUPE_TTL_SECONDS); return the count."""
    ttl = settings.EVENT_DEDUPE_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    with transaction.atomic(durable=True):
        return ConsumedMessage.objects.filter(create_time__lt=now - timedelta(seconds=ttl)).delete()[0]


def message_seen_first(*, consumer: str, message_id: str, ttl_seconds: int | None = None) -> bool:
    """
    Return True the first time consumer sees message_id within the TTL (Redis SET NX EX), else False.

    Needs REDIS_URL (the django-redis cache).
    """
    ttl = settings.EVENT_DEDUPE_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    client = get_redis_connection("default")
    return bool(client.set(f"events:seen:{consumer}:{message_id}", b"1", nx=True, ex=ttl))
