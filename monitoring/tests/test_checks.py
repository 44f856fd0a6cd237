"""Each kind of alert fires once when its condition arises and resolves itself when it clears."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone
from eth_utils import to_checksum_address

from assets import services as assets_services
from assets.models import BusinessType
from assets.relay import runner
from coins.models import CoinConfig
from monitoring import checks, delivery
from monitoring import services as monitoring_services
from monitoring.models import Alert, AlertDelivery, DeliveryEvent
from recharges import services as recharges_services
from recharges import watchlist
from recharges.tests.fakechain import FakeChain
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawStatus

pytestmark = pytest.mark.django_db(transaction=True)

OUTSIDE = to_checksum_address("0x" + "5e" * 20)


@pytest.fixture(autouse=True)
def _fresh_scanner(settings):
    settings.SCAN_START_HEIGHTS = {"ETH": 0}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    watchlist.watchlist_reset()
    yield
    watchlist.watchlist_reset()


def scan(chain: FakeChain, now) -> recharges_services.ScanResult:
    return recharges_services.deposits_scan_batch(chain_id=chain.chain_id, now=now, adapter=chain)


def alerts(kind: str) -> list[Alert]:
    return list(Alert.objects.filter(kind=kind).order_by("id"))


def events_delivered(kind: str) -> list[tuple[str, str]]:
    return list(AlertDelivery.objects.filter(alert__kind=kind).order_by("id").values_list("channel", "event"))


class TestNodeDown:
    def test_fires_once_while_the_node_is_down_and_resolves_when_it_answers(self, channels):
        chain = FakeChain("ETH")
        chain.mine(count=3)
        t0 = timezone.now()
        chain.down = True

        scan(chain, t0)
        scan(chain, t0 + timedelta(seconds=30))
        checks.monitoring_check(now=t0 + timedelta(seconds=40))
        (alert,) = alerts("NODE_DOWN")
        assert (alert.subject, alert.count, alert.resolved_at) == ("chain ETH", 2, None)

        chain.down = False
        scan(chain, t0 + timedelta(seconds=60))
        checks.monitoring_check(now=t0 + timedelta(seconds=61))
        delivery.deliveries_run(now=t0 + timedelta(seconds=62))

        alert.refresh_from_db()
        assert alert.resolved_at == t0 + timedelta(seconds=61)
        assert alert.resolved_how.startswith("the node answered at")
        assert [r.json["event"] for r in channels.received] == ["alert.fired", "alert.resolved"]


class TestNodeStale:
    def test_fires_once_when_the_tip_stops_moving_and_resolves_when_it_moves(self, channels, settings):
        settings.NODE_STALE_SECONDS = {"ETH": 300}
        chain = FakeChain("ETH")
        chain.mine(count=3)
        t0 = timezone.now()
        scan(chain, t0)
        checks.monitoring_check(now=t0)

        scan(chain, t0 + timedelta(seconds=200))  # the node answers, with the same tip
        checks.monitoring_check(now=t0 + timedelta(seconds=299))
        assert alerts("NODE_STALE") == []
        checks.monitoring_check(now=t0 + timedelta(seconds=301))
        checks.monitoring_check(now=t0 + timedelta(seconds=360))
        (alert,) = alerts("NODE_STALE")
        assert (alert.subject, alert.count) == ("chain ETH", 2)
        assert "tip 3 has not moved for 360s (limit 300s)" in alert.message

        chain.mine()
        scan(chain, t0 + timedelta(seconds=400))
        checks.monitoring_check(now=t0 + timedelta(seconds=401))

        alert.refresh_from_db()
        assert alert.resolved_how == "the tip moved"
        assert events_delivered("NODE_STALE") == [("WEBHOOK", DeliveryEvent.FIRED), ("WEBHOOK", DeliveryEvent.RESOLVED)]


class TestScannerLag:
    def test_fires_once_while_the_scanner_is_behind_and_resolves_when_it_catches_up(self, channels, settings):
        settings.SCAN_BATCH_BLOCKS = 5
        settings.SCANNER_LAG_ALERT_BLOCKS = {"*": 30}
        chain = FakeChain("ETH")
        chain.mine(count=60)
        now = timezone.now()

        scan(chain, now)
        checks.monitoring_check(now=now)
        scan(chain, now)
        checks.monitoring_check(now=now)
        (alert,) = alerts("SCANNER_LAG")
        assert (alert.count, alert.message) == (2, "the scanner is at block 9, 51 behind the tip 60 (limit 30)")

        while not scan(chain, now).caught_up:
            pass
        checks.monitoring_check(now=now)

        alert.refresh_from_db()
        assert alert.resolved_how == "the scanner caught up"


class TestReviewOverdue:
    def test_fires_once_while_a_withdrawal_waits_too_long_and_resolves_when_it_is_decided(self, channels, user):
        coin = CoinConfig.objects.get(coin_id="ETH")
        assets_services.balance_credit(
            user_id=user.id, coin=coin, amount=Decimal(500), business_type=BusinessType.RECHARGE, biz_ref="fund"
        )
        record = withdrawals_services.withdrawal_apply(
            user_id=user.id, coin_id="ETH", to_address=OUTSIDE, amount="50", idempotency_key="k1"
        )
        assert record.status == WithdrawStatus.PENDING_REVIEW
        applied = record.create_time

        checks.monitoring_check(now=applied + timedelta(seconds=3599))
        assert alerts("WITHDRAW_REVIEW_OVERDUE") == []
        checks.monitoring_check(now=applied + timedelta(seconds=3700))
        checks.monitoring_check(now=applied + timedelta(seconds=3800))
        (alert,) = alerts("WITHDRAW_REVIEW_OVERDUE")
        assert (alert.subject, alert.count) == ("review queue", 2)
        assert record.withdraw_no in alert.message

        auditor = get_user_model().objects.create_user("auditor", password="auditor-pw-1", is_staff=True)
        withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id, remark="ok")
        checks.monitoring_check(now=applied + timedelta(seconds=3900))

        alert.refresh_from_db()
        assert alert.resolved_at is not None
        assert events_delivered("WITHDRAW_REVIEW_OVERDUE") == [
            ("WEBHOOK", DeliveryEvent.FIRED),
            ("WEBHOOK", DeliveryEvent.RESOLVED),
        ]


class TestRelayLag:
    def test_fires_once_while_events_wait_and_resolves_once_the_relay_published_them(self, channels, user, tmp_path):
        coin = CoinConfig.objects.get(coin_id="ETH")
        assets_services.balance_credit(
            user_id=user.id, coin=coin, amount=Decimal(1), business_type=BusinessType.RECHARGE, biz_ref="r1"
        )
        now = timezone.now()

        checks.monitoring_check(now=now + timedelta(seconds=90))
        checks.monitoring_check(now=now + timedelta(seconds=120))
        (alert,) = alerts("EVENT_RELAY_LAG")
        assert (alert.subject, alert.count) == ("event_outbox", 2)

        config = runner.relay_config_from_settings(broker_url=f"sqlite:///{tmp_path / 'events.sqlite3'}")
        assert runner.Relay(config=config).run_pass(max_seconds=10).published == 1
        checks.monitoring_check(now=now + timedelta(seconds=150))

        alert.refresh_from_db()
        assert alert.resolved_how == "the oldest pending event is recent again"


class TestLoginThrottled:
    def test_is_routed_and_resolves_after_a_quiet_quarter_of_an_hour(self, channels):
        t0 = timezone.now()
        for _ in range(3):  # as the API raises it on each throttled login
            monitoring_services.alert_raise_alone(
                kind="LOGIN_THROTTLED", subject="login 203.0.113.7", message="10 failed logins in 60 s", now=t0
            )
        delivery.deliveries_run(now=t0)

        checks.monitoring_check(now=t0 + timedelta(seconds=899))
        assert alerts("LOGIN_THROTTLED")[0].resolved_at is None
        checks.monitoring_check(now=t0 + timedelta(seconds=901))

        (alert,) = alerts("LOGIN_THROTTLED")
        assert (alert.count, alert.resolved_how) == (3, "no new occurrence for 900s")
        assert "block or contact them" in channels.received[0].json["alert"]["what_to_do"]


class TestCheckRun:
    def test_a_failing_check_does_not_stop_the_others(self, settings):
        chain = FakeChain("ETH")
        chain.mine(count=60)
        settings.SCAN_BATCH_BLOCKS = 5
        scan(chain, timezone.now())
        settings.SCANNER_LAG_ALERT_BLOCKS = "30"  # a broken setting: not per chain
        settings.NODE_STALE_SECONDS = {"ETH": -1}

        report = checks.monitoring_check()

        assert report.errors == ["scanner_lag"]
        assert alerts("NODE_STALE")[0].subject == "chain ETH"

    def test_runs_from_the_beat_task_and_the_command(self, settings):
        from django.core.management import call_command

        from monitoring import tasks

        assert tasks.monitoring_check.apply().get() == 0
        call_command("monitoring_check")
