"""
Broker clients of the relay: RabbitMQ (default), Redis Streams (small installs) and an embedded
SQLite sink (a bare machine with nothing installed).

Each client publishes a batch of messages and returns only when the broker has confirmed all of
them, so that the relay marks rows sent only after the broker holds them. Publishing is pipelined:
the whole batch is written, then the confirms are awaited together.
"""

from __future__ import annotations

import sqlite3
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import amqp
import kombu
import redis
from amqp import serialization as amqp_serialization
from amqp import spec as amqp_spec

from assets import events
from assets.relay import partitioning


@dataclass(frozen=True)
class OutgoingMessage:
    """One outbox row on its way out; body is the stored JSON text {header, body}."""

    outbox_id: int
    message_id: str
    topic: str
    tags: str
    keys: str
    partition_key: str
    body: str


class PublishFailed(Exception):
    """
    The broker did not confirm the whole batch (connection lost, nack, unroutable, timeout).

    confirmed is the length of the batch prefix the broker did confirm: those rows may be marked sent.
    """

    def __init__(self, message: str, *, confirmed: int = 0) -> None:
        super().__init__(message)
        self.confirmed = confirmed


@dataclass(frozen=True)
class PendingBatch:
    """A published batch whose confirms may still be on their way."""

    messages: list[OutgoingMessage]
    first_tag: int = 0
    generation: int = 0


class Broker(Protocol):
    """
    batch_begin_irreversible publishes a batch and returns at once; batch_await returns when the
    broker confirmed all of it. The relay begins batch N+1 before awaiting batch N, so the broker
    works while the relay reads the database (pipelining across batches as well as within one).
    """

    def batch_begin_irreversible(self, *, messages: list[OutgoingMessage]) -> PendingBatch: ...

    def batch_await(self, *, batch: PendingBatch, timeout: float) -> None: ...

    def publish_batch_irreversible(self, *, messages: list[OutgoingMessage], timeout: float) -> None: ...

    def close(self) -> None: ...


# --- RabbitMQ ----------------------------------------------------------------------------------


class RabbitBroker:
    """
    RabbitMQ over AMQP 0-9-1 (py-amqp, kombu's transport) with publisher confirms.

    One durable direct exchange per topic, `<prefix><topic>`, and the seed's count of durable
    queues bound to it, `<prefix><topic>.<i>` with routing key `<i>`; a user's events are routed to
    queue int(user_id) % count. Messages are persistent and mandatory (an unroutable message is
    returned and counts as a failure, never as sent).
    """

    def __init__(self, *, url: str, prefix: str, connection_name: str, connect_timeout: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix
        self.connection_name = connection_name
        self.connect_timeout = connect_timeout
        self._client: kombu.Connection | None = None
        self._connection: amqp.Connection | None = None
        self._channel: amqp.Channel | None = None
        self._next_tag = 1
        self._confirmed_upto = 0
        self._single_acks: set[int] = set()
        self._failed_tag: int | None = None
        self._returned: set[str] = set()
        self._generation = 0

    # Confirms: RabbitMQ numbers the messages of a confirm-mode channel 1, 2, 3...; an ack with
    # multiple=True confirms every tag up to its own.
    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        if multiple:
            self._confirmed_upto = max(self._confirmed_upto, delivery_tag)
        else:
            self._single_acks.add(delivery_tag)
        while self._confirmed_upto + 1 in self._single_acks:
            self._confirmed_upto += 1
            self._single_acks.discard(self._confirmed_upto)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        first = self._confirmed_upto + 1 if multiple else delivery_tag
        self._failed_tag = first if self._failed_tag is None else min(self._failed_tag, first)

    def _on_return(self, exc: Exception, exchange: str, routing_key: str, message: amqp.Message) -> None:
        self._returned.add(str(message.properties.get("message_id", "")))

    def _connect(self) -> amqp.Channel:
        if self._channel is not None:
            return self._channel
        # kombu opens the connection (URL parsing, its pyamqp transport); its raw py-amqp channel
        # is used directly because kombu's Producer cannot pipeline confirms.
        client = kombu.Connection(
            self.url,
            connect_timeout=self.connect_timeout,
            transport_options={"client_properties": {"connection_name": self.connection_name}},
        )
        try:
            client.connect()
            channel = client.connection.channel()
            self._declare(channel)
            channel.confirm_select()
        except Exception:
            _close_quietly(client)
            raise
        channel.events["basic_ack"].add(self._on_ack)
        channel.events["basic_nack"].add(self._on_nack)
        channel.events["basic_return"].add(self._on_return)
        self._client, self._connection, self._channel = client, client.connection, channel
        # Confirm state belongs to one channel: a new one starts again at tag 1.
        self._generation += 1
        self._next_tag, self._confirmed_upto, self._single_acks = 1, 0, set()
        self._failed_tag, self._returned = None, set()
        return channel

    def _declare(self, channel: amqp.Channel) -> None:
        # kombu's entity objects declare the topology on the raw channel (idempotent).
        for topic, count in events.TOPIC_QUEUE_COUNTS.items():
            exchange = kombu.Exchange(
                partitioning.exchange_name(prefix=self.prefix, topic=topic), type="direct", durable=True
            )
            exchange(channel).declare()
            for index in range(count):
                queue = kombu.Queue(
                    partitioning.queue_name(prefix=self.prefix, topic=topic, index=index),
                    exchange=exchange,
                    routing_key=str(index),
                    durable=True,
                )
                queue(channel).declare()

    def batch_begin_irreversible(self, *, messages: list[OutgoingMessage]) -> PendingBatch:
        """
        Publish messages in order without waiting for their confirms (see batch_await).

        :raises PublishFailed: no connection, or it broke while publishing.
        """
        try:
            channel = self._connect()
        except Exception as exc:
            self.close()
            raise PublishFailed(f"cannot connect to RabbitMQ: {exc.__class__.__name__}") from exc
        first_tag = self._next_tag
        try:
            self._connection.transport.write(self._publish_frames(channel_id=channel.channel_id, messages=messages))
        except Exception as exc:
            self.close()
            raise PublishFailed(f"RabbitMQ publish failed: {exc.__class__.__name__}") from exc
        self._next_tag += len(messages)
        self._connection.bytes_sent += len(messages)
        return PendingBatch(messages=messages, first_tag=first_tag, generation=self._generation)

    def _publish_frames(self, *, channel_id: int, messages: list[OutgoingMessage]) -> bytes:
        """
        Return the basic.publish frames of messages, as py-amqp's frame writer makes them, in one
        buffer: one socket write per batch instead of one per message (the relay's hot path).
        """
        chunk = self._connection.frame_max - 8
        out = bytearray()
        for message in messages:
            args = amqp_serialization.dumps(
                "Bssbb",
                (
                    0,
                    partitioning.exchange_name(prefix=self.prefix, topic=message.topic),
                    str(partitioning.queue_index(topic=message.topic, partition_key=message.partition_key)),
                    True,  # mandatory: an unroutable message comes back instead of vanishing
                    False,
                ),
            )
            body = message.body.encode()
            # The tag is the AMQP type; keys and the user id are in the JSON header and body.
            properties = amqp.Message(
                body, content_type="application/json", delivery_mode=2, message_id=message.message_id, type=message.tags
            )._serialize_properties()
            method = struct.pack(">HH", *amqp_spec.Basic.Publish) + args
            header = struct.pack(">HHQ", amqp_spec.Basic.Publish[0], 0, len(body)) + properties
            for frame_type, payload in ((1, method), (2, header)):
                out += struct.pack(">BHI", frame_type, channel_id, len(payload)) + payload + b"\xce"
            for offset in range(0, len(body), chunk):
                piece = body[offset : offset + chunk]
                out += struct.pack(">BHI", 3, channel_id, len(piece)) + piece + b"\xce"
        return bytes(out)

    def batch_await(self, *, batch: PendingBatch, timeout: float) -> None:
        """
        Wait until RabbitMQ confirmed every message of batch.

        :raises PublishFailed: connection lost, a nack, a returned message or no confirm within timeout;
            its `confirmed` is the confirmed prefix of the batch.
        """
        last_tag = batch.first_tag + len(batch.messages) - 1
        deadline = time.monotonic() + timeout
        try:
            if batch.generation != self._generation or self._connection is None:
                raise ConnectionError("the connection of this batch is gone")
            while self._confirmed_upto < last_tag and not self._failed_in(batch, last_tag):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("no confirm in time")
                self._connection.drain_events(timeout=remaining)
        except Exception as exc:
            confirmed = self._confirmed_prefix(batch, last_tag)
            self.close()
            raise PublishFailed(f"RabbitMQ publish failed: {exc.__class__.__name__}", confirmed=confirmed) from exc
        if self._failed_in(batch, last_tag):
            confirmed = self._confirmed_prefix(batch, last_tag)
            self.close()  # a fresh channel: the messages after the refused one are republished in order
            raise PublishFailed("RabbitMQ refused part of the batch", confirmed=confirmed)
        for message in batch.messages:
            self._returned.discard(message.message_id)

    def _failed_in(self, batch: PendingBatch, last_tag: int) -> bool:
        if self._failed_tag is not None and self._failed_tag <= last_tag:
            return True
        return bool(self._returned) and any(m.message_id in self._returned for m in batch.messages)

    def _confirmed_prefix(self, batch: PendingBatch, last_tag: int) -> int:
        if batch.generation != self._generation:
            return 0
        upto = min(self._confirmed_upto, last_tag)
        if self._failed_tag is not None:
            upto = min(upto, self._failed_tag - 1)
        for position, message in enumerate(batch.messages):
            if message.message_id in self._returned:
                upto = min(upto, batch.first_tag + position - 1)
        return max(0, upto - batch.first_tag + 1)

    def publish_batch_irreversible(self, *, messages: list[OutgoingMessage], timeout: float) -> None:
        """
        Publish messages in order and wait until RabbitMQ confirmed all of them.

        :raises PublishFailed: as batch_begin_irreversible and batch_await.
        """
        if messages:
            self.batch_await(batch=self.batch_begin_irreversible(messages=messages), timeout=timeout)

    def close(self) -> None:
        client, self._client, self._connection, self._channel = self._client, None, None, None
        if client is not None:
            _close_quietly(client)


def _close_quietly(client: kombu.Connection) -> None:
    try:
        client.close()
    except Exception:
        try:
            client.collect()
        except Exception:  # noqa: S110 - the connection is being dropped anyway
            pass


# --- Redis Streams -----------------------------------------------------------------------------


class RedisStreamsBroker:
    """
    Redis Streams: one stream per queue, `<prefix><topic>.<i>`, entries {message_id, tags, keys, body}.

    XADD replies once the entry is in the stream, so the pipelined replies are the confirms. With
    appendonly and `appendfsync always` the entry is also on disk; otherwise a Redis crash can lose
    the last second of events, which is why RabbitMQ is the default.
    """

    def __init__(self, *, url: str, prefix: str, connect_timeout: float = 5.0) -> None:
        self.prefix = prefix
        self._client = redis.Redis.from_url(url, socket_connect_timeout=connect_timeout)

    def publish_batch_irreversible(self, *, messages: list[OutgoingMessage], timeout: float) -> None:
        """
        Append messages to their streams in one pipeline and wait for every reply.

        :raises PublishFailed: Redis unreachable or an XADD refused.
        """
        if not messages:
            return
        pipe = self._client.pipeline(transaction=False)
        for message in messages:
            index = partitioning.queue_index(topic=message.topic, partition_key=message.partition_key)
            pipe.xadd(
                partitioning.queue_name(prefix=self.prefix, topic=message.topic, index=index),
                {"message_id": message.message_id, "tags": message.tags, "keys": message.keys, "body": message.body},
            )
        try:
            replies = pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            raise PublishFailed(f"Redis publish failed: {exc.__class__.__name__}") from exc
        for position, reply in enumerate(replies):
            if isinstance(reply, Exception):
                raise PublishFailed("Redis refused part of the batch", confirmed=position)

    def batch_begin_irreversible(self, *, messages: list[OutgoingMessage]) -> PendingBatch:
        """Publish messages and wait for the broker's reply (this broker has no asynchronous confirms)."""
        self.publish_batch_irreversible(messages=messages, timeout=30.0)
        return PendingBatch(messages=messages)

    def batch_await(self, *, batch: PendingBatch, timeout: float) -> None:
        """Nothing to wait for: batch_begin_irreversible returned after the broker's reply."""

    def close(self) -> None:
        self._client.close()


# --- Embedded SQLite sink ----------------------------------------------------------------------


SINK_SCHEMA = """
CREATE TABLE IF NOT EXISTS event_sink (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    tags TEXT NOT NULL,
    keys TEXT NOT NULL,
    body TEXT NOT NULL
)
"""


class SqliteSinkBroker:
    """
    The embedded broker of a bare machine: a SQLite file (var/events.sqlite3) with one table of
    messages; a message's queue is `<prefix><topic>.<i>` as on RabbitMQ. The commit is the
    confirm. Consumers read it in id order (`SELECT ... WHERE queue = ? AND id > ?`): the single
    writer is the relay's commit, so ids appear in commit order.
    """

    def __init__(self, *, path: str, prefix: str) -> None:
        self.path = path
        self.prefix = prefix
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(SINK_SCHEMA)
            self._db = db
        return self._db

    def publish_batch_irreversible(self, *, messages: list[OutgoingMessage], timeout: float) -> None:
        """
        Append messages to the sink file in one transaction.

        :raises PublishFailed: the file cannot be written.
        """
        if not messages:
            return
        rows = [
            (
                partitioning.queue_name(
                    prefix=self.prefix,
                    topic=m.topic,
                    index=partitioning.queue_index(topic=m.topic, partition_key=m.partition_key),
                ),
                m.message_id,
                m.tags,
                m.keys,
                m.body,
            )
            for m in messages
        ]
        try:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT INTO event_sink (queue, message_id, tags, keys, body) VALUES (?,?,?,?,?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            self.close()
            raise PublishFailed(f"event sink write failed: {exc.__class__.__name__}") from exc

    def batch_begin_irreversible(self, *, messages: list[OutgoingMessage]) -> PendingBatch:
        """Publish messages and wait for the broker's reply (this broker has no asynchronous confirms)."""
        self.publish_batch_irreversible(messages=messages, timeout=30.0)
        return PendingBatch(messages=messages)

    def batch_await(self, *, batch: PendingBatch, timeout: float) -> None:
        """Nothing to wait for: batch_begin_irreversible returned after the broker's reply."""

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()


def broker_for_url(*, url: str, prefix: str, connection_name: str) -> Broker:
    """
    Return the broker client for EVENT_BROKER_URL: amqp://, redis:// (or rediss://), sqlite:///path.

    :raises ValueError: an unknown scheme.
    """
    scheme = urlsplit(url).scheme
    if scheme in {"amqp", "pyamqp"}:
        return RabbitBroker(url=url.replace("pyamqp://", "amqp://", 1), prefix=prefix, connection_name=connection_name)
    if scheme in {"redis", "rediss"}:
        return RedisStreamsBroker(url=url, prefix=prefix)
    if scheme == "sqlite":
        return SqliteSinkBroker(path=sink_path(url=url), prefix=prefix)
    raise ValueError(f"EVENT_BROKER_URL has an unknown scheme: {scheme!r}")


def sink_path(*, url: str) -> str:
    """Return the file of a sqlite:///path sink URL (sqlite:////abs/path or sqlite:///rel/path)."""
    return url.split("sqlite:///", 1)[1] or "events.sqlite3"


__all__ = [
    "Broker",
    "OutgoingMessage",
    "PublishFailed",
    "RabbitBroker",
    "RedisStreamsBroker",
    "SqliteSinkBroker",
    "broker_for_url",
    "sink_path",
]
