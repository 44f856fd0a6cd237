"""
The relay against a real RabbitMQ, with relay processes started as `manage.py relay_events`.

Each test uses its own exchange/queue prefix and deletes what it declared; the broker outage is a
TCP proxy between the relay and RabbitMQ that is cut and restored (the shared server itself is
never restarted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import kombu
import pytest
from django.conf import settings

from assets import consumers
from assets.models import EventRelayLease, OutboxMessage, OutboxStatus
from assets.relay import partitioning
from assets.tests.relay_support import (
    TcpProxy,
    database_url_of_connection,
    env_without_test_database,
    outbox_rows,
    rabbit_drain,
    rabbit_topology_delete,
)

pytestmark = [pytest.mark.mysql, pytest.mark.rabbitmq, pytest.mark.django_db(transaction=True)]

MANAGE = Path(__file__).resolve().parents[2] / "manage.py"


@pytest.fixture(scope="module")
def rabbit_url() -> str:
    url = os.environ.get("RABBITMQ_URL") or (
        settings.EVENT_BROKER_URL if settings.EVENT_BROKER_URL.startswith("amqp") else ""
    )
    required = bool(url) or os.environ.get("CI", "").lower() == "true"
    url = url or "amqp://guest:guest@127.0.0.1:5672//"
    try:
        with kombu.Connection(url, connect_timeout=3) as client:
            client.connect()
    except Exception as exc:
        if required:
            pytest.fail(f"RabbitMQ not reachable at {urlsplit(url).hostname}: {exc}")
        pytest.skip("needs RabbitMQ: set RABBITMQ_URL")
    return url


@pytest.fixture
def prefix(rabbit_url):
    name = f"test-relay-{uuid.uuid4().hex[:8]}."
    yield name
    rabbit_topology_delete(url=rabbit_url, prefix=name)


class Relays:
    """Relay processes of one test; all are stopped (SIGTERM, then SIGKILL) at the end."""

    def __init__(self, *, prefix: str, log_dir: Path) -> None:
        self.prefix = prefix
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []

    def start(
        self, *, broker_url: str, args: tuple[str, ...] = (), batch_size: int = 500, lease_seconds: int = 6
    ) -> subprocess.Popen:
        env = env_without_test_database()
        env.update(
            DATABASE_URL=database_url_of_connection(),
            EVENT_BROKER_URL=broker_url,
            EVENT_EXCHANGE_PREFIX=self.prefix,
            EVENT_RELAY_LEASE_SECONDS=str(lease_seconds),
            EVENT_RELAY_CONFIRM_TIMEOUT_SECONDS=str(lease_seconds // 3),
            EVENT_RELAY_IDLE_MS="50",
            EVENT_RELAY_BATCH_SIZE=str(batch_size),
            LOG_LEVEL="WARNING",
        )
        process = subprocess.Popen(  # noqa: S603 - our own command
            [sys.executable, str(MANAGE), "relay_events", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(self.log_dir / f"relay-{len(self.processes)}.log").open("wb"),
        )
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def relays(prefix, tmp_path):
    group = Relays(prefix=prefix, log_dir=tmp_path)
    yield group
    group.stop()


def wait_until_sent(*, total: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if OutboxMessage.objects.filter(status=OutboxStatus.SENT).count() >= total:
            return
        time.sleep(0.1)
    pending = OutboxMessage.objects.filter(status=OutboxStatus.PENDING).count()
    raise AssertionError(f"{pending} of {total} events still pending after {timeout}s")


def first_deliveries_by_user(received: list[tuple[str, dict]]) -> dict[tuple[str, str], list[int]]:
    """Outbox ids per (user, topic) in delivery order, each message counted at its first delivery."""
    outbox_id = dict(OutboxMessage.objects.values_list("message_id", "id"))
    seen: set[str] = set()
    by_user: dict[tuple[str, str], list[int]] = defaultdict(list)
    for queue, message in received:
        header = message["header"]
        user = str(message["body"]["user_id"])
        # The queue is the user's, as the seed's ordered messages require.
        index = partitioning.queue_index(topic=header["topic"], partition_key=user)
        assert queue == partitioning.queue_name(
            prefix=queue.split(header["topic"])[0], topic=header["topic"], index=index
        )
        if header["message_id"] in seen:
            continue
        seen.add(header["message_id"])
        by_user[(user, header["topic"])].append(outbox_id[header["message_id"]])
    return by_user


def test_three_relay_processes_deliver_10000_events_of_100_users_once_and_in_order(rabbit_url, prefix, relays):
    for _ in range(3):
        relays.start(broker_url=rabbit_url)
    owners_seen: set[str] = set()

    # Inserted in 20 transactions while the relays run, users interleaved.
    for _ in range(20):
        OutboxMessage.objects.bulk_create(outbox_rows(count=500, users=100))
        owners_seen |= set(EventRelayLease.objects.exclude(owner="").values_list("owner", flat=True))
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    while len(owners_seen) < 3 and time.monotonic() < deadline:
        owners_seen |= set(EventRelayLease.objects.exclude(owner="").values_list("owner", flat=True))
        time.sleep(0.1)
    wait_until_sent(total=10_000, timeout=40)
    received = rabbit_drain(url=rabbit_url, prefix=prefix, expected=10_000, timeout=30)

    assert len(owners_seen) == 3  # the partitions were shared by the three processes
    message_ids = [m["header"]["message_id"] for _, m in received]
    assert len(message_ids) == 10_000  # none lost, none sent twice
    assert set(message_ids) == set(OutboxMessage.objects.values_list("message_id", flat=True))
    by_user = first_deliveries_by_user(received)
    assert len({user for user, _ in by_user}) == 100
    for ids in by_user.values():
        assert ids == sorted(ids)
    assert all(p.poll() is None for p in relays.processes)


def test_a_broken_broker_connection_loses_nothing(rabbit_url, prefix, relays):
    parts = urlsplit(rabbit_url)
    proxy = TcpProxy(upstream_host=parts.hostname or "127.0.0.1", upstream_port=parts.port or 5672)
    proxy.start()
    proxied_url = urlunsplit(
        (parts.scheme, f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}", parts.path, "", "")
    )
    try:
        relays.start(broker_url=proxied_url, batch_size=50)
        relays.start(broker_url=proxied_url, batch_size=50)
        OutboxMessage.objects.bulk_create(outbox_rows(count=3000, users=100))
        deadline = time.monotonic() + 20
        while OutboxMessage.objects.filter(status=OutboxStatus.SENT).count() < 300 and time.monotonic() < deadline:
            time.sleep(0.01)

        proxy.stop()  # every relay connection breaks, mid-batch; reconnects are refused
        connections_at_cut = proxy.connections
        sent_at_cut = OutboxMessage.objects.filter(status=OutboxStatus.SENT).count()
        OutboxMessage.objects.bulk_create(outbox_rows(count=1000, users=100))  # written during the outage
        time.sleep(1.0)
        stuck = OutboxMessage.objects.filter(status=OutboxStatus.PENDING).count()
        proxy.start()
        wait_until_sent(total=4000, timeout=40)
    finally:
        proxy.stop()
    received = rabbit_drain(url=rabbit_url, prefix=prefix, expected=4000, timeout=30)

    assert 300 <= sent_at_cut < 3000
    assert stuck >= 1000  # nothing was marked sent while the broker was away
    assert proxy.connections > connections_at_cut  # the relays reconnected
    assert {m["header"]["message_id"] for _, m in received} == set(
        OutboxMessage.objects.values_list("message_id", flat=True)
    )
    for ids in first_deliveries_by_user(received).values():
        assert ids == sorted(ids)


def test_a_relay_killed_between_confirm_and_mark_sent_delivers_at_least_once(rabbit_url, prefix, relays):
    OutboxMessage.objects.bulk_create(outbox_rows(count=300, users=30))

    crashing = relays.start(broker_url=rabbit_url, args=("--crash-after-confirm",), batch_size=100, lease_seconds=3)
    crashing.wait(timeout=30)
    after_crash = OutboxMessage.objects.filter(status=OutboxStatus.SENT).count()
    # The next relay takes the partitions over once the dead relay's 3 s leases expire.
    relays.start(broker_url=rabbit_url, batch_size=100, lease_seconds=3)
    wait_until_sent(total=300, timeout=30)
    # The crashed relay had published its first batch (confirmed) and maybe begun the second.
    received = rabbit_drain(url=rabbit_url, prefix=prefix, expected=400, timeout=20)
    handled = [
        m["header"]["message_id"]
        for _, m in received
        if consumers.message_claim(consumer="crash-test", message_id=m["header"]["message_id"])
    ]

    assert crashing.returncode == -signal.SIGKILL
    assert after_crash == 0  # the broker had confirmed the first batch, the rows were not yet marked
    assert len(received) >= 400  # at least the confirmed first batch of 100 arrived twice
    assert sorted(handled) == sorted(OutboxMessage.objects.values_list("message_id", flat=True))
    assert len(handled) == 300  # the dedupe helper let each message through once
    for ids in first_deliveries_by_user(received).values():
        assert ids == sorted(ids)
