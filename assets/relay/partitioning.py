"""
Where an event goes: its relay partition and its broker queue, both stable functions of the user id.

The seed sends ordered messages with RocketMQ's "hash of the user id modulo the queue count". Here
the partition key is the decimal user id, and both the relay partition and the queue are that
number modulo a count. The database computes the same value with CAST(partition_key AS integer),
so the relay can select one partition's rows in SQL; a key that is not a number counts as 0 in
both places (its leading digits, as SQL's CAST reads them).
"""

from __future__ import annotations

import re

from assets import events

_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


def partition_key_number(*, partition_key: str) -> int:
    """Return the integer a SQL CAST(partition_key AS integer) gives: its leading digits, else 0."""
    match = _LEADING_INT.match(partition_key)
    return abs(int(match.group(1))) if match else 0


def partition_of(*, partition_key: str, partitions: int) -> int:
    """Return the relay partition (0..partitions-1) of an event."""
    return partition_key_number(partition_key=partition_key) % partitions


def queue_index(*, topic: str, partition_key: str) -> int:
    """Return the queue (0..count-1) of the topic that carries this user's events."""
    return partition_key_number(partition_key=partition_key) % events.TOPIC_QUEUE_COUNTS[topic]


def queue_name(*, prefix: str, topic: str, index: int) -> str:
    """Return the broker name of a topic's queue: `<prefix><topic>.<index>`, e.g. `asset-topic.3`."""
    return f"{prefix}{topic}.{index}"


def exchange_name(*, prefix: str, topic: str) -> str:
    return f"{prefix}{topic}"
