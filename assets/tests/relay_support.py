"""Helpers of the relay tests and bench/events.py: outbox rows, a consumer, broker cleanup, a TCP proxy."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from decimal import Decimal

import kombu
from django.db import connection
from django.utils import timezone

from assets import events
from assets.models import OutboxMessage
from assets.relay import partitioning


def outbox_rows(*, count: int, users: int, first_user: int = 1, wallet_every: int = 5) -> list[OutboxMessage]:
    """Build count outbox rows in the seed's formats, users taking turns; every wallet_every-th is a recharge."""
    now = timezone.now()
    rows = []
    for n in range(count):
        user_id = first_user + n % users
        if wallet_every and n % wallet_every == 0:
            event = events.wallet_recharge(
                recharge_no=f"R{uuid.uuid4().hex[:20]}",
                user_id=user_id,
                coin_id="BTC",
                amount=Decimal("0.001"),
                tx_hash=f"0x{n:064x}",
                status=2,
                confirmations=6,
                at=now,
            )
        else:
            event = events.asset_changed(
                flow_no=f"F{uuid.uuid4().hex[:20]}",
                user_id=user_id,
                coin_id="BTC",
                business_type=1,
                amount=Decimal("0.001"),
                balance_before=Decimal(n),
                balance_after=Decimal(n) + Decimal("0.001"),
                frozen_amount=Decimal(0),
                frozen_before=Decimal(0),
                frozen_after=Decimal(0),
                biz_ref=f"b{n}",
                ref_tx_hash="",
                at=now,
            )
        rows.append(
            OutboxMessage(
                message_id=event.header.message_id,
                topic=event.header.topic,
                tags=event.header.tags,
                keys=event.header.keys,
                partition_key=event.partition_key,
                payload=event.as_dict(),
            )
        )
    return rows


def all_queues(*, prefix: str) -> list[str]:
    return [
        partitioning.queue_name(prefix=prefix, topic=topic, index=i)
        for topic, count in events.TOPIC_QUEUE_COUNTS.items()
        for i in range(count)
    ]


def rabbit_topology_delete(*, url: str, prefix: str) -> None:
    """Delete the exchanges and queues a relay declared under prefix."""
    with kombu.Connection(url, connect_timeout=5) as client:
        channel = client.connection.channel()
        for queue in all_queues(prefix=prefix):
            channel.queue_delete(queue)
        for topic in events.TOPIC_QUEUE_COUNTS:
            channel.exchange_delete(partitioning.exchange_name(prefix=prefix, topic=topic))


def rabbit_drain(*, url: str, prefix: str, expected: int, timeout: float, quiet: float = 0.5) -> list[tuple[str, dict]]:
    """
    Consume every queue under prefix until expected messages came and then quiet seconds passed with
    none; return (queue, message) pairs in arrival order (per queue that is the queue's order).
    """
    received: list[tuple[str, dict]] = []
    with kombu.Connection(url, connect_timeout=5) as client:
        raw = client.connection
        channel = raw.channel()
        channel.basic_qos(0, 2000, False)
        for queue in all_queues(prefix=prefix):
            channel.basic_consume(
                queue, callback=lambda m, q=queue: received.append((q, json.loads(m.body))), no_ack=True
            )
        deadline = time.monotonic() + timeout
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            try:
                raw.drain_events(timeout=0.1)
            except TimeoutError:
                pass
            if len(received) != last_count:
                last_count, last_change = len(received), time.monotonic()
            elif len(received) >= expected and time.monotonic() - last_change >= quiet:
                break
    return received


def database_url_of_connection() -> str:
    """Return a DATABASE_URL for the database this process is connected to (the test database)."""
    settings_dict = connection.settings_dict
    user = settings_dict.get("USER") or "root"
    password = settings_dict.get("PASSWORD") or ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 3306
    return f"mysql://{user}:{password}@{host}:{port}/{settings_dict['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TcpProxy:
    """A loopback TCP proxy to the broker; stop() breaks every connection and refuses new ones until start()."""

    def __init__(self, *, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            # close() alone does not wake a thread blocked in accept() on Linux, and the socket
            # keeps accepting: shutdown() does.
            try:
                listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
                self.connections += 1
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def env_without_test_database() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_TEST_NAME", None)
    return env
