"""
Benchmark: outbox events relayed to RabbitMQ per second (publisher confirms, per-user order kept),
beside two raw publish rates measured in the same run against the same RabbitMQ.

    python bench/events.py [--rounds 3] [--count 20000] [--batch 500]

- relay_per_s: `manage.py relay_events` processes relaying `count` pending rows committed at once
  (from the commit to the last row marked sent), for 1, 2 and 3 processes.
- raw_confirm_per_s: a plain kombu loop, each publish waiting for its confirm.
- raw_pipelined_per_s: the relay's publisher alone, no database: batches of `batch` written at once,
  the next batch written before the previous one's confirms are awaited.
- raw_pipelined_amqp_loop_per_s: py-amqp's basic_publish per message, each batch's confirms awaited
  together (one socket write per message: slower than the above).

Creates its own database (bench_events) and exchange/queue prefix, removes both at the end. Prints
one JSON object; figures are medians of the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _django

ROOT = _django.ROOT
DATABASE = "bench_events"


def raw_confirm_per_s(*, url: str, prefix: str, body: bytes, count: int) -> float:
    import kombu

    with kombu.Connection(url, transport_options={"confirm_publish": True}) as client:
        producer = kombu.Producer(client.channel(), exchange=kombu.Exchange(f"{prefix}asset-topic", type="direct"))
        started = time.perf_counter()
        for n in range(count):
            producer.publish(body, routing_key=str(n % 16), delivery_mode=2, content_type="application/json")
        return count / (time.perf_counter() - started)


def raw_pipelined_per_s(*, url: str, prefix: str, count: int, batch: int) -> float:
    """
    The relay's publisher with no database: batches written in one socket write each, batch N+1
    written before batch N's confirms are awaited. The difference to relay_per_s is the cost of
    reading the outbox and marking it sent.
    """
    from assets.relay.brokers import OutgoingMessage, RabbitBroker
    from assets.tests.relay_support import outbox_rows

    rows = outbox_rows(count=batch, users=100)
    messages = [
        OutgoingMessage(
            outbox_id=n, message_id=r.message_id, topic=r.topic, tags=r.tags, keys=r.keys,
            partition_key=r.partition_key, body=json.dumps(r.payload),
        )
        for n, r in enumerate(rows)
    ]  # fmt: skip
    broker = RabbitBroker(url=url, prefix=prefix, connection_name="bench-events raw")
    try:
        broker._connect()
        started = time.perf_counter()
        in_flight = None
        for _ in range(count // batch):
            current = broker.batch_begin_irreversible(messages=messages)
            if in_flight is not None:
                broker.batch_await(batch=in_flight, timeout=30)
            in_flight = current
        broker.batch_await(batch=in_flight, timeout=30)
        return (count // batch) * batch / (time.perf_counter() - started)
    finally:
        broker.close()


def raw_amqp_loop_per_s(*, url: str, prefix: str, body: bytes, count: int, batch: int) -> float:
    """py-amqp's own basic_publish (one socket write per message), each batch's confirms awaited together."""
    import amqp
    import kombu

    with kombu.Connection(url) as client:
        channel = client.connection.channel()
        channel.confirm_select()
        acked = [0]

        def on_ack(tag: int, multiple: bool) -> None:
            acked[0] = max(acked[0], tag)

        channel.events["basic_ack"].add(on_ack)
        started = time.perf_counter()
        published = 0
        while published < count:
            for _ in range(min(batch, count - published)):
                published += 1
                channel.basic_publish(
                    amqp.Message(body, delivery_mode=2, content_type="application/json", message_id=str(published)),
                    exchange=f"{prefix}asset-topic",
                    routing_key=str(published % 16),
                )
            while acked[0] < published:
                client.connection.drain_events(timeout=10)
        return count / (time.perf_counter() - started)


def start_relays(*, processes: int, url: str, prefix: str, batch: int) -> list[subprocess.Popen]:
    env = dict(os.environ)
    env.update(
        EVENT_BROKER_URL=url,
        EVENT_EXCHANGE_PREFIX=prefix,
        EVENT_RELAY_BATCH_SIZE=str(batch),
        EVENT_RELAY_LEASE_SECONDS="6",
        EVENT_RELAY_CONFIRM_TIMEOUT_SECONDS="2",
        EVENT_RELAY_IDLE_MS="20",
        LOG_LEVEL="WARNING",
    )
    return [
        subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "relay_events"], env=env, cwd=ROOT)
        for _ in range(processes)
    ]


def stop_relays(relays: list[subprocess.Popen]) -> None:
    for process in relays:
        process.send_signal(signal.SIGTERM)
    for process in relays:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_lease_owners(*, processes: int, timeout: float = 30) -> None:
    from assets.models import EventRelayLease

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        owners = {}
        for partition, owner in EventRelayLease.objects.values_list("partition_no", "owner"):
            owners.setdefault(owner, []).append(partition)
        if "" not in owners and len(owners) == processes:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{processes} relay processes did not share the partitions in {timeout}s")


def relay_round(*, count: int, users: int) -> float:
    from django.db import transaction
    from django.db.models import Max

    from assets.models import OutboxMessage, OutboxStatus
    from assets.tests.relay_support import outbox_rows

    rows = outbox_rows(count=count, users=users)
    with transaction.atomic():
        OutboxMessage.objects.bulk_create(rows, batch_size=2000)
    committed = time.time()
    deadline = time.monotonic() + 120
    while OutboxMessage.objects.filter(status=OutboxStatus.PENDING).exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the relay did not finish in 120 s")
        time.sleep(0.05)
    last_sent = OutboxMessage.objects.aggregate(last=Max("sent_time"))["last"].timestamp()
    return count / (last_sent - committed)


def drop_database() -> None:
    import dj_database_url
    import MySQLdb

    cfg = dj_database_url.parse(os.environ["DATABASE_URL"])
    admin = MySQLdb.connect(host=cfg["HOST"], port=int(cfg["PORT"] or 3306), user=cfg["USER"], passwd=cfg["PASSWORD"])
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    admin.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--users", type=int, default=1000)
    args = parser.parse_args()

    url = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
    _django.setup(DATABASE)
    import kombu
    from django.db import connection

    from assets.models import EventRelayLease, EventRelayMember, OutboxMessage
    from assets.relay.brokers import RabbitBroker
    from assets.tests.relay_support import all_queues, outbox_rows, rabbit_topology_delete

    prefix = f"bench-events-{uuid.uuid4().hex[:8]}."
    topology = RabbitBroker(url=url, prefix=prefix, connection_name="bench-events")
    topology._connect()  # declares the exchanges and queues
    topology.close()
    body = json.dumps(outbox_rows(count=2, users=1)[1].payload).encode()

    def purge() -> None:
        with kombu.Connection(url) as client:
            channel = client.connection.channel()
            for queue in all_queues(prefix=prefix):
                channel.queue_purge(queue)

    figures: dict[str, list[float]] = {
        "raw_confirm": [], "raw_pipelined": [], "raw_amqp_loop": [], "1": [], "2": [], "3": []
    }  # fmt: skip
    try:
        for _ in range(args.rounds):
            figures["raw_confirm"].append(raw_confirm_per_s(url=url, prefix=prefix, body=body, count=2000))
            purge()
            figures["raw_pipelined"].append(
                raw_pipelined_per_s(url=url, prefix=prefix, count=args.count, batch=args.batch)
            )
            purge()
            figures["raw_amqp_loop"].append(
                raw_amqp_loop_per_s(url=url, prefix=prefix, body=body, count=args.count, batch=args.batch)
            )
            purge()
        for processes in (1, 2, 3):
            EventRelayLease.objects.all().delete()
            EventRelayMember.objects.all().delete()
            relays = start_relays(processes=processes, url=url, prefix=prefix, batch=args.batch)
            try:
                wait_for_lease_owners(processes=processes)
                for _ in range(args.rounds):
                    figures[str(processes)].append(relay_round(count=args.count, users=args.users))
                    with connection.cursor() as cursor:
                        cursor.execute("DELETE FROM event_outbox")
                    purge()
            finally:
                stop_relays(relays)
    finally:
        rabbit_topology_delete(url=url, prefix=prefix)
        OutboxMessage.objects.all().delete()
        connection.close()
        drop_database()

    relay = _django.median(figures["1"])
    pipelined = _django.median(figures["raw_pipelined"])
    print(
        json.dumps(
            {
                "relay_per_s": round(relay),
                "raw_confirm_per_s": round(_django.median(figures["raw_confirm"])),
                "raw_pipelined_per_s": round(pipelined),
                "relay_ratio": round(relay / pipelined, 3),
                "raw_pipelined_amqp_loop_per_s": round(_django.median(figures["raw_amqp_loop"])),
                "relay_per_s_by_processes": {p: round(_django.median(figures[p])) for p in ("1", "2", "3")},
                "count": args.count,
                "batch": args.batch,
                "users": args.users,
                "rounds": args.rounds,
                "rounds_relay_per_s": {p: [round(v) for v in figures[p]] for p in ("1", "2", "3")},
            }
        )
    )


if __name__ == "__main__":
    main()
