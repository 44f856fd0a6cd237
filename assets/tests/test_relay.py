"""The event relay against the database, the embedded SQLite sink and Redis Streams (no RabbitMQ needed)."""

from __future__ import annotations

import io
import json
import sqlite3
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import transaction
from django.db.models import BigIntegerField
from django.db.models.functions import Abs, Cast, Mod
from django.utils import timezone
from prometheus_client import REGISTRY

from assets import consumers, events, tasks
from assets import services as assets_services
from assets.models import BusinessType, ConsumedMessage, EventRelayLease, OutboxMessage, OutboxStatus
from assets.relay import brokers, partitioning, runner
from assets.relay import services as relay_services
from assets.tests.relay_support import outbox_rows
from coins.models import CoinConfig
from monitoring.models import Alert

pytestmark = pytest.mark.django_db


@pytest.fixture
def sink_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'events.sqlite3'}"


def sink_messages(url: str) -> list[tuple[str, dict]]:
    with sqlite3.connect(brokers.sink_path(url=url)) as db:
        return [
            (queue, json.loads(body)) for queue, body in db.execute("SELECT queue, body FROM event_sink ORDER BY id")
        ]


def relay_for(url: str, **options) -> runner.Relay:
    options = {"exchange_prefix": "", "lease_seconds": 30.0, **options}
    config = runner.relay_config_from_settings(broker_url=url, **options)
    return runner.Relay(config=config)


class TestPartitioning:
    def test_python_and_sql_agree_on_every_partition(self):
        keys = ["0", "1", "15", "16", "17", "123456789", "-5", "42abc", "abc", ""]
        OutboxMessage.objects.bulk_create(
            [
                OutboxMessage(message_id=f"m{i}", topic="asset-topic", tags="T", keys="k", partition_key=k, payload={})
                for i, k in enumerate(keys)
            ]
        )

        in_sql = dict(
            OutboxMessage.objects.annotate(p=Mod(Abs(Cast("partition_key", BigIntegerField())), 16)).values_list(
                "partition_key", "p"
            )
        )

        assert in_sql == {k: partitioning.partition_of(partition_key=k, partitions=16) for k in keys}

    def test_puts_a_user_on_the_seeds_queue_counts(self):
        assert partitioning.queue_index(topic=events.ASSET_TOPIC, partition_key="35") == 35 % 16
        assert partitioning.queue_index(topic=events.WALLET_TOPIC, partition_key="35") == 35 % 8


class TestLeases:
    def test_shares_partitions_fairly_and_never_twice(self):
        now = timezone.now()

        first_alone = relay_services.relay_leases_refresh(owner="a", partition_count=16, lease_seconds=30, now=now)
        b_before_a_gives_up = relay_services.relay_leases_refresh(
            owner="b", partition_count=16, lease_seconds=30, now=now
        )
        a_after = relay_services.relay_leases_refresh(owner="a", partition_count=16, lease_seconds=30, now=now)
        b_after = relay_services.relay_leases_refresh(owner="b", partition_count=16, lease_seconds=30, now=now)

        assert first_alone == list(range(16))
        assert b_before_a_gives_up == []
        assert len(a_after) == 8 and len(b_after) == 8
        assert set(a_after).isdisjoint(b_after)
        owners = dict(EventRelayLease.objects.values_list("partition_no", "owner"))
        assert {p for p, o in owners.items() if o == "a"} == set(a_after)

    def test_takes_over_the_partitions_of_a_relay_that_stopped_renewing(self):
        now = timezone.now()
        relay_services.relay_leases_refresh(owner="dead", partition_count=16, lease_seconds=10, now=now)

        while_alive = relay_services.relay_leases_refresh(owner="b", partition_count=16, lease_seconds=10, now=now)
        after_expiry = relay_services.relay_leases_refresh(
            owner="b", partition_count=16, lease_seconds=10, now=now + timedelta(seconds=11)
        )

        assert while_alive == []
        assert after_expiry == list(range(16))

    def test_a_released_relay_hands_over_at_once(self):
        now = timezone.now()
        relay_services.relay_leases_refresh(owner="a", partition_count=16, lease_seconds=30, now=now)

        relay_services.relay_leases_release(owner="a", now=now)

        assert relay_services.relay_leases_refresh(owner="b", partition_count=16, lease_seconds=30, now=now) == list(
            range(16)
        )


class TestRelayToTheEmbeddedSink:
    def test_publishes_every_ledger_event_in_order_and_marks_it_sent(self, user, other_user, sink_url):
        btc = CoinConfig.objects.get(coin_id="BTC")
        for n in range(5):
            for who in (user, other_user):
                assets_services.balance_credit(
                    user_id=who.id, coin=btc, amount=Decimal("0.5"), business_type=BusinessType.RECHARGE,
                    biz_ref=f"r{who.id}-{n}",
                )  # fmt: skip

        result = relay_for(sink_url).run_pass(max_seconds=10)

        assert result.published == 10
        assert not OutboxMessage.objects.filter(status=OutboxStatus.PENDING).exists()
        assert OutboxMessage.objects.filter(sent_time__isnull=True).count() == 0
        published = sink_messages(sink_url)
        assert [m["header"]["message_id"] for _, m in published] == list(
            OutboxMessage.objects.order_by("id").values_list("message_id", flat=True)
        )
        for who in (user, other_user):
            mine = [(q, m["body"]) for q, m in published if m["body"]["user_id"] == who.id]
            assert {q for q, _ in mine} == {f"asset-topic.{who.id % 16}"}
            assert [b["balance_after"] for _, b in mine] == ["0.5", "1", "1.5", "2", "2.5"]

    def test_finds_a_late_commit_with_a_lower_id(self, sink_url):
        early, late = OutboxMessage.objects.bulk_create(outbox_rows(count=2, users=1))
        # The higher id went out first; the lower id committed later (a slow transaction).
        OutboxMessage.objects.filter(id=late.id).update(status=OutboxStatus.SENT, sent_time=timezone.now())

        result = relay_for(sink_url).run_pass(max_seconds=10)

        assert result.published == 1
        assert [m["header"]["message_id"] for _, m in sink_messages(sink_url)] == [early.message_id]

    def test_publishes_only_the_partitions_it_leases(self, sink_url):
        OutboxMessage.objects.bulk_create(outbox_rows(count=32, users=16, wallet_every=0))
        now = timezone.now()
        relay_services.relay_leases_refresh(owner="other", partition_count=16, lease_seconds=60, now=now)
        relay = relay_for(sink_url)
        # The other relay is alive and holds everything; it then gives half up for the newcomer.
        relay._refresh_leases(force=True)
        relay_services.relay_leases_refresh(owner="other", partition_count=16, lease_seconds=60, now=now)
        relay._refresh_leases(force=True)

        sent = relay.step()
        sent += relay.step()

        mine = relay._partitions
        assert len(mine) == 8
        published_users = {m["body"]["user_id"] for _, m in sink_messages(sink_url)}
        assert {u % 16 for u in published_users} == set(mine)
        assert sent == 16
        assert OutboxMessage.objects.filter(status=OutboxStatus.PENDING).count() == 16

    def test_runs_as_a_command_and_as_a_celery_task(self, sink_url, settings):
        settings.EVENT_BROKER_URL = sink_url
        OutboxMessage.objects.bulk_create(outbox_rows(count=7, users=3))
        out = io.StringIO()

        call_command("relay_events", "--once", "--max-seconds", "10", stdout=out)
        OutboxMessage.objects.bulk_create(outbox_rows(count=4, users=3))
        published_by_task = tasks.events_relay.apply(kwargs={"max_seconds": 10}).get()

        assert json.loads(out.getvalue())["published"] == 7
        assert published_by_task == 4
        assert len(sink_messages(sink_url)) == 11


class TestOps:
    def test_alerts_when_the_oldest_pending_event_is_too_old(self):
        OutboxMessage.objects.bulk_create(outbox_rows(count=1, users=1))
        OutboxMessage.objects.update(create_time=timezone.now() - timedelta(seconds=600))

        lag = runner.relay_lag_check(threshold_seconds=60)

        assert 599 <= lag < 700
        alert = Alert.objects.get(kind="EVENT_RELAY_LAG")
        assert "600s" in alert.message or "60" in alert.message

    def test_stays_quiet_when_the_lag_is_below_the_threshold(self):
        OutboxMessage.objects.bulk_create(outbox_rows(count=1, users=1))

        assert tasks.events_lag_check.apply().get() < settings.RELAY_LAG_ALERT_SECONDS
        assert not Alert.objects.filter(kind="EVENT_RELAY_LAG").exists()

    def test_exposes_the_lag_on_metrics(self):
        OutboxMessage.objects.bulk_create(outbox_rows(count=3, users=1))
        OutboxMessage.objects.update(create_time=timezone.now() - timedelta(seconds=120))

        lag = REGISTRY.get_sample_value("wallet_event_relay_lag_seconds")
        pending = REGISTRY.get_sample_value("wallet_event_outbox_pending")

        assert 119 <= lag < 200
        assert pending == 3

    def test_prunes_only_sent_events_past_the_retention(self):
        old_sent, recent_sent, old_pending = OutboxMessage.objects.bulk_create(outbox_rows(count=3, users=1))
        now = timezone.now()
        OutboxMessage.objects.filter(id=old_sent.id).update(status=OutboxStatus.SENT, sent_time=now - timedelta(days=8))
        OutboxMessage.objects.filter(id=recent_sent.id).update(
            status=OutboxStatus.SENT, sent_time=now - timedelta(days=6)
        )
        OutboxMessage.objects.filter(id=old_pending.id).update(create_time=now - timedelta(days=30))
        out = io.StringIO()

        call_command("prune_events", "--days", "7", stdout=out)

        assert set(OutboxMessage.objects.values_list("id", flat=True)) == {recent_sent.id, old_pending.id}
        assert out.getvalue().startswith("deleted 1 ")


class TestConsumerDedupe:
    def test_claims_a_message_once_per_consumer(self):
        first = consumers.message_claim(consumer="ledger-mirror", message_id="msg_1")
        again = consumers.message_claim(consumer="ledger-mirror", message_id="msg_1")
        other_consumer = consumers.message_claim(consumer="notifier", message_id="msg_1")

        assert (first, again, other_consumer) == (True, False, True)

    def test_a_rolled_back_effect_releases_the_claim(self):
        with pytest.raises(RuntimeError), transaction.atomic():
            assert consumers.message_claim(consumer="c", message_id="msg_2") is True
            raise RuntimeError("the consumer's effect failed")

        assert consumers.message_claim(consumer="c", message_id="msg_2") is True

    def test_prunes_old_claims(self):
        consumers.message_claim(consumer="c", message_id="old")
        ConsumedMessage.objects.update(create_time=timezone.now() - timedelta(days=9))
        consumers.message_claim(consumer="c", message_id="new")

        assert consumers.consumed_prune(now=timezone.now(), ttl_seconds=7 * 86400) == 1
        assert list(ConsumedMessage.objects.values_list("message_id", flat=True)) == ["new"]

    def test_the_hourly_prune_task_forgets_expired_claims_too(self):
        consumers.message_claim(consumer="c", message_id="expired")
        ConsumedMessage.objects.update(
            create_time=timezone.now() - timedelta(seconds=settings.EVENT_DEDUPE_TTL_SECONDS + 60)
        )
        consumers.message_claim(consumer="c", message_id="fresh")

        assert tasks.events_prune() == 1
        assert list(ConsumedMessage.objects.values_list("message_id", flat=True)) == ["fresh"]

    @pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL")
    def test_redis_helper_sees_a_message_first_only_once(self):
        message_id = f"msg_{uuid.uuid4().hex}"

        seen = [consumers.message_seen_first(consumer="t", message_id=message_id, ttl_seconds=60) for _ in range(3)]

        assert seen == [True, False, False]


@pytest.mark.skipif(not settings.REDIS_URL, reason="needs Redis: set REDIS_URL")
class TestRedisStreams:
    def test_appends_each_users_events_to_its_stream_in_order(self):
        import redis

        prefix = f"t{uuid.uuid4().hex[:8]}."
        client = redis.Redis.from_url(settings.REDIS_URL)
        OutboxMessage.objects.bulk_create(outbox_rows(count=40, users=4))
        try:
            result = relay_for(settings.REDIS_URL, exchange_prefix=prefix).run_pass(max_seconds=10)

            assert result.published == 40
            user_1_stream = client.xrange(f"{prefix}asset-topic.1")
            expected = list(
                OutboxMessage.objects.filter(partition_key="1", topic="asset-topic")
                .order_by("id")
                .values_list("message_id", flat=True)
            )
            assert [fields[b"message_id"].decode() for _, fields in user_1_stream] == expected
            assert json.loads(user_1_stream[0][1][b"body"])["header"]["message_id"] == expected[0]
        finally:
            keys = list(client.scan_iter(f"{prefix}*"))
            if keys:
                client.delete(*keys)
