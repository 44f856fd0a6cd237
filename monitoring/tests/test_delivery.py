"""Alerts reach people: a signed webhook and email, routed by severity, retried, every attempt recorded."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from monitoring import checks, delivery
from monitoring import services as monitoring_services
from monitoring.models import Alert, AlertDelivery, Channel, DeliveryEvent, DeliveryStatus, Severity
from monitoring.tests.conftest import WEBHOOK_SECRET, readme_recipe

pytestmark = pytest.mark.django_db(transaction=True)


def raise_alert(severity=Severity.CRITICAL, kind="WITHDRAW_STUCK", subject="withdrawal W1", now=None):
    return monitoring_services.alert_raise_alone(
        severity=severity, kind=kind, subject=subject, message="not mined after 1800 s", now=now
    )


def deliveries(**filters) -> list[AlertDelivery]:
    return list(AlertDelivery.objects.filter(**filters).order_by("id"))


class TestRouting:
    def test_a_new_alert_is_delivered_once_per_routed_channel_however_often_it_repeats(self, channels, mailoutbox):
        for _ in range(3):
            raise_alert()

        first = delivery.deliveries_run()
        second = delivery.deliveries_run()

        assert (first.sent, second.sent) == (2, 0)
        assert len(channels.received) == 1
        assert len(mailoutbox) == 1
        rows = deliveries()
        assert [(r.channel, r.event, r.status, r.attempts) for r in rows] == [
            (Channel.WEBHOOK, DeliveryEvent.FIRED, DeliveryStatus.SENT, 1),
            (Channel.EMAIL, DeliveryEvent.FIRED, DeliveryStatus.SENT, 1),
        ]
        assert rows[0].http_status == 200 and rows[0].sent_at is not None
        assert Alert.objects.get().count == 3

    def test_severity_chooses_the_channels(self, channels, mailoutbox):
        raise_alert(severity=Severity.INFO, subject="withdrawal W-info")
        raise_alert(severity=Severity.WARNING, subject="withdrawal W-warning")
        raise_alert(severity=Severity.CRITICAL, subject="withdrawal W-critical")

        delivery.deliveries_run()

        routed = sorted((r.alert.subject, r.channel) for r in AlertDelivery.objects.select_related("alert"))
        assert routed == [
            ("withdrawal W-critical", Channel.EMAIL),
            ("withdrawal W-critical", Channel.WEBHOOK),
            ("withdrawal W-warning", Channel.WEBHOOK),
        ]
        assert [m.subject for m in mailoutbox] == ["[CRITICAL] WITHDRAW_STUCK withdrawal W-critical"]

    def test_a_raised_severity_is_delivered_again_and_an_unconfigured_channel_gets_nothing(
        self, channels, settings, mailoutbox
    ):
        settings.ALERT_EMAIL_TO = []
        raise_alert(severity=Severity.WARNING)

        raise_alert(severity=Severity.CRITICAL)
        delivery.deliveries_run()

        assert [r.json["event"] for r in channels.received] == ["alert.fired", "alert.escalated"]
        assert channels.received[1].json["alert"]["severity"] == "critical"
        assert mailoutbox == []

    def test_a_resolved_alert_is_announced_to_the_channels_that_heard_it_fire(self, channels, mailoutbox):
        raise_alert()
        delivery.deliveries_run()

        monitoring_services.alert_resolve_alone(
            kind="WITHDRAW_STUCK", subject="withdrawal W1", how="the withdrawal is completed"
        )
        delivery.deliveries_run()

        assert [r.json["event"] for r in channels.received] == ["alert.fired", "alert.resolved"]
        resolved = channels.received[1].json["alert"]
        assert resolved["resolved_how"] == "the withdrawal is completed" and resolved["resolved_at"]
        assert [m.subject for m in mailoutbox][-1].endswith("RESOLVED")


class TestWebhook:
    def test_is_signed_so_that_the_readme_recipe_accepts_it_and_refuses_any_change(self, channels):
        verify = readme_recipe()["verify_signature"]
        raise_alert()

        delivery.deliveries_run()

        (request,) = channels.received
        header, body = request.headers["X-Wallet-Signature"], request.body
        assert verify(WEBHOOK_SECRET, header, body) is True
        assert verify(WEBHOOK_SECRET, header, body.replace(b"W1", b"W2")) is False
        assert verify("another-secret", header, body) is False
        stale = delivery.signature_header(body=body, secrets=[WEBHOOK_SECRET], timestamp=int(time.time()) - 3600)
        assert verify(WEBHOOK_SECRET, stale, body) is False
        assert request.headers["X-Wallet-Delivery"] == str(AlertDelivery.objects.get(channel=Channel.WEBHOOK).id)

    def test_carries_the_alert_and_what_to_do(self, channels):
        raise_alert()

        delivery.deliveries_run()

        document = channels.received[0].json
        assert document["event"] == "alert.fired"
        assert document["alert"]["kind"] == "WITHDRAW_STUCK"
        assert document["alert"]["severity"] == "critical"
        assert "never pay it a second time by hand" in document["alert"]["what_to_do"]

    def test_signs_with_every_secret_during_a_rotation(self, channels, settings):
        verify = readme_recipe()["verify_signature"]
        settings.ALERT_WEBHOOK_SECRET = f"new-secret-1,{WEBHOOK_SECRET}"
        raise_alert()

        delivery.deliveries_run()

        (request,) = channels.received
        assert verify("new-secret-1", request.headers["X-Wallet-Signature"], request.body) is True
        assert verify(WEBHOOK_SECRET, request.headers["X-Wallet-Signature"], request.body) is True

    def test_the_signature_is_an_hmac_of_timestamp_and_body(self):
        header = delivery.signature_header(body=b'{"a":1}', secrets=["s"], timestamp=1700000000)

        expected = hmac.new(b"s", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
        assert header == f"t=1700000000,v1={expected}"


class TestRetries:
    def test_a_failed_delivery_is_retried_with_backoff_and_each_attempt_recorded(self, channels, settings):
        settings.ALERT_EMAIL_TO = []
        channels.answers = [500, 503, 200]
        now = timezone.now()
        raise_alert(now=now)

        delivery.deliveries_run(now=now)
        (row,) = deliveries()
        assert (row.status, row.attempts, row.http_status) == (DeliveryStatus.PENDING, 1, 500)
        assert row.next_attempt_at == now + timedelta(seconds=30)
        assert row.last_error == "webhook answered HTTP 500"

        delivery.deliveries_run(now=now + timedelta(seconds=29))  # not due yet
        delivery.deliveries_run(now=now + timedelta(seconds=30))
        row.refresh_from_db()
        assert (row.status, row.attempts, row.http_status) == (DeliveryStatus.PENDING, 2, 503)
        assert row.next_attempt_at == now + timedelta(seconds=30 + 60)

        delivery.deliveries_run(now=now + timedelta(seconds=90))
        row.refresh_from_db()
        assert (row.status, row.attempts, row.http_status, row.last_error) == (DeliveryStatus.SENT, 3, 200, "")
        assert len(channels.received) == 3

    def test_backoff_doubles_up_to_its_ceiling(self, settings):
        settings.ALERT_DELIVERY_BACKOFF_SECONDS = 30
        settings.ALERT_DELIVERY_BACKOFF_MAX_SECONDS = 3600

        assert [delivery.backoff_seconds(n) for n in (1, 2, 3, 7, 8, 20)] == [30, 60, 120, 1920, 3600, 3600]

    def test_a_delivery_that_keeps_failing_is_given_up_and_another_channel_is_told(
        self, channels, settings, mailoutbox
    ):
        settings.ALERT_DELIVERY_MAX_ATTEMPTS = 2
        channels.answers = [500] * 10
        now = timezone.now()
        raise_alert(severity=Severity.WARNING, now=now)  # warnings go to the webhook only

        delivery.deliveries_run(now=now)
        delivery.deliveries_run(now=now + timedelta(seconds=30))
        delivery.deliveries_run(now=now + timedelta(seconds=31))

        (row,) = deliveries(alert__kind="WITHDRAW_STUCK")
        assert (row.status, row.attempts, row.http_status) == (DeliveryStatus.FAILED, 2, 500)
        failed = Alert.objects.get(kind="ALERT_DELIVERY_FAILED")
        assert failed.subject == "channel webhook" and failed.severity == Severity.CRITICAL
        assert [m.subject for m in mailoutbox] == ["[CRITICAL] ALERT_DELIVERY_FAILED channel webhook"]

    def test_a_given_up_channel_alert_resolves_when_that_channel_works_again(self, channels, settings):
        settings.ALERT_DELIVERY_MAX_ATTEMPTS = 1
        settings.ALERT_EMAIL_TO = []
        channels.answers = [500]
        now = timezone.now()
        raise_alert(now=now)
        delivery.deliveries_run(now=now)  # the alert's delivery given up; ALERT_DELIVERY_FAILED raised
        delivery.deliveries_run(now=now + timedelta(seconds=1))  # that one reaches the receiver (200)

        checks.monitoring_check(now=now + timedelta(seconds=2))

        failed = Alert.objects.get(kind="ALERT_DELIVERY_FAILED")
        assert failed.resolved_how == "a later delivery on that channel succeeded"

    def test_an_unreachable_receiver_is_recorded_without_its_url_or_the_secret(self, settings, caplog):
        settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hooks/test-only-token-abc"
        settings.ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.ALERT_EMAIL_TO = []
        caplog.set_level(logging.DEBUG)
        raise_alert()

        delivery.deliveries_run()

        (row,) = deliveries()
        assert (row.status, row.http_status, row.attempts) == (DeliveryStatus.PENDING, None, 1)
        assert row.last_error == "webhook not reached: ConnectionError"
        assert "test-only-token-abc" not in caplog.text
        assert WEBHOOK_SECRET not in caplog.text

    def test_a_worker_that_died_while_sending_leaves_the_delivery_due_after_its_lease(self, channels, settings):
        settings.ALERT_EMAIL_TO = []
        now = timezone.now()
        raise_alert(now=now)
        (claimed,) = delivery._claim(now=now, limit=10)  # the worker claimed it, then died

        early = delivery.deliveries_run(now=now + timedelta(seconds=delivery.CLAIM_LEASE_SECONDS - 1))
        late = delivery.deliveries_run(now=now + timedelta(seconds=delivery.CLAIM_LEASE_SECONDS))

        assert (early.sent, late.sent) == (0, 1)
        row = AlertDelivery.objects.get(id=claimed)
        assert (row.status, row.attempts) == (DeliveryStatus.SENT, 2)
        assert len(channels.received) == 1


class TestEmail:
    def test_says_what_happened_and_what_to_do(self, channels, mailoutbox, settings):
        settings.ALERT_ADMIN_BASE_URL = "https://wallet.example.com"
        alert = raise_alert()

        delivery.deliveries_run()

        (mail,) = mailoutbox
        assert mail.to == ["oncall@example.com"]
        assert mail.subject == "[CRITICAL] WITHDRAW_STUCK withdrawal W1"
        assert "not mined after 1800 s" in mail.body
        assert "What to do:" in mail.body and "never pay it a second time by hand" in mail.body
        assert f"https://wallet.example.com/admin/monitoring/alert/{alert.id}/change/" in mail.body


@pytest.mark.mysql
def test_two_delivery_runs_at_once_send_each_delivery_once(channels, settings):
    settings.ALERT_EMAIL_TO = []
    for n in range(20):
        raise_alert(subject=f"withdrawal W{n}")
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run() -> None:
        from django.db import connection

        try:
            barrier.wait()
            delivery.deliveries_run(limit=100)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    subjects = sorted(r.json["alert"]["subject"] for r in channels.received)
    assert subjects == sorted(f"withdrawal W{n}" for n in range(20))
    assert AlertDelivery.objects.filter(status=DeliveryStatus.SENT, attempts=1).count() == 20
