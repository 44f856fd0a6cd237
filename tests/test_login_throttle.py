"""Failed logins are throttled per username and per client address, across processes, on the API and the admin."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import RequestFactory

from monitoring.models import Alert
from wallet_project import login_throttle

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token"


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.LOGIN_FAILURES_PER_USERNAME = 3
    settings.LOGIN_FAILURES_PER_ADDRESS = 5
    settings.LOGIN_THROTTLE_WINDOW_SECONDS = 900
    settings.LOGIN_TRUSTED_PROXIES = 0


def login(client, username: str, password: str, address: str = "203.0.113.7"):
    return client.post(TOKEN, {"username": username, "password": password}, format="json", REMOTE_ADDR=address)


class TestTokenEndpoint:
    def test_refuses_a_username_after_too_many_failures_with_a_429_and_retry_after(self, api_client, user):
        failures = [login(api_client, "alice", "wrong").status_code for _ in range(3)]

        refused = login(api_client, "alice", "alice-password-1")  # even the right password, for now

        assert failures == [401, 401, 401]
        assert refused.status_code == 429
        assert refused.json() == {
            "code": "login_throttled",
            "message": "Too many failed logins for this username: try again in 15 minutes.",
            "fields": {},
        }
        assert 0 < int(refused["Retry-After"]) <= 900

    def test_the_username_is_counted_whatever_its_case(self, api_client, user):
        for name in ("alice", "ALICE", "Alice"):
            login(api_client, name, "wrong")

        assert login(api_client, "alice", "alice-password-1").status_code == 429

    @pytest.mark.mysql
    def test_spellings_the_database_takes_for_the_same_account_count_against_that_account(self, api_client, user):
        # MariaDB's default collation compares "alicé" equal to "alice", so each of these logs in as
        # alice: a counter per spelling would give an attacker ten guesses per accent variant.
        spellings = ["alicé", "àlice", "ALÍCE"]
        assert all(login(api_client, name, "alice-password-1").status_code == 200 for name in spellings[:1])

        failures = [login(api_client, name, "wrong", address=f"198.51.100.{n}") for n, name in enumerate(spellings)]

        assert [r.status_code for r in failures] == [401, 401, 401]
        assert login(api_client, "alice", "alice-password-1", address="192.0.2.50").status_code == 429
        assert login(api_client, "alíce", "alice-password-1", address="192.0.2.51").status_code == 429

    def test_a_success_before_the_limit_clears_the_usernames_failures(self, api_client, user):
        login(api_client, "alice", "wrong")
        login(api_client, "alice", "wrong")
        assert login(api_client, "alice", "alice-password-1").status_code == 200

        later = [login(api_client, "alice", "wrong").status_code for _ in range(2)]

        assert later == [401, 401]
        assert login(api_client, "alice", "alice-password-1").status_code == 200

    def test_another_user_behind_the_same_address_still_logs_in_when_one_account_is_hammered(
        self, api_client, user, other_user
    ):
        hammering = [login(api_client, "alice", f"guess-{n}").status_code for n in range(20)]

        bob = login(api_client, "bob", "bob-password-1")

        assert hammering[:3] == [401] * 3 and set(hammering[3:]) == {429}  # refused attempts are not counted
        assert bob.status_code == 200

    def test_an_address_spraying_many_usernames_is_refused(self, api_client, other_user):
        sprayed = [login(api_client, f"user{n}", "Password1").status_code for n in range(5)]

        bob = login(api_client, "bob", "bob-password-1")
        elsewhere = login(api_client, "bob", "bob-password-1", address="198.51.100.9")

        assert sprayed == [401] * 5
        assert bob.status_code == 429
        assert bob.json()["message"] == "Too many failed logins from this address: try again in 15 minutes."
        assert elsewhere.status_code == 200

    def test_a_lock_out_is_one_alert_per_username_and_per_address(self, api_client, user):
        for _ in range(6):
            login(api_client, "alice", "wrong")
        for n in range(5):
            login(api_client, f"nobody{n}", "wrong")

        alerts = {a.subject: a for a in Alert.objects.filter(kind="LOGIN_THROTTLED")}

        assert set(alerts) == {"user alice", "address 203.0.113.7"}
        assert alerts["user alice"].count == 1
        assert "ask them to change their password" in alerts["user alice"].message

    def test_an_unknown_username_is_not_written_in_the_alert(self, api_client, db):
        for _ in range(3):
            login(api_client, "correct-horse-battery", "wrong")

        alert = Alert.objects.get(kind="LOGIN_THROTTLED")

        assert "correct-horse-battery" not in alert.subject + alert.message
        assert alert.subject.startswith("user unknown username #")

    def test_the_lock_ends_with_its_window(self, api_client, user, settings):
        settings.LOGIN_THROTTLE_WINDOW_SECONDS = 2
        for _ in range(3):
            login(api_client, "alice", "wrong")
        assert login(api_client, "alice", "alice-password-1").status_code == 429

        time.sleep(2.2)

        assert login(api_client, "alice", "alice-password-1").status_code == 200


class TestAdminLogin:
    def test_shows_a_clear_message_and_does_not_log_in_while_locked(self, client, db):
        get_user_model().objects.create_user("ops-pat", password="ops-pat-password-1", is_staff=True)
        form = {"username": "ops-pat", "next": "/admin/"}

        for _ in range(3):
            assert client.post("/admin/login/", {**form, "password": "wrong"}).status_code == 200
        locked = client.post("/admin/login/", {**form, "password": "ops-pat-password-1"})

        assert locked.status_code == 200
        assert "Too many failed logins for this username: try again in 15 minutes." in locked.content.decode()
        assert "_auth_user_id" not in client.session
        assert Alert.objects.filter(kind="LOGIN_THROTTLED", subject="user ops-pat").exists()

    def test_an_admin_login_failure_counts_against_the_api_too(self, client, api_client, user):
        for _ in range(3):
            client.post("/admin/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="203.0.113.7")

        assert login(api_client, "alice", "alice-password-1").status_code == 429


class TestSharedCounts:
    @pytest.mark.skipif(not django_settings.REDIS_URL, reason="needs REDIS_URL")
    @pytest.mark.mysql  # the other process reads alice's account from the test database: a server's
    @pytest.mark.django_db(transaction=True)
    def test_failures_counted_by_another_process_lock_this_one(self, api_client, user):
        # Another web worker (a separate process) sees two failures for alice; this one sees the third.
        script = (
            "import django, os; django.setup()\n"
            "from django.conf import settings\n"
            "from django.db import connections\n"
            "connections['default'].settings_dict['NAME'] = os.environ['WALLET_TEST_DB_NAME']\n"
            "settings.LOGIN_FAILURES_PER_USERNAME = 3\n"
            "from wallet_project import login_throttle as t\n"
            "for _ in range(2): t.login_failed(t.LoginAttempt(username='alice', address='192.0.2.1'))\n"
        )
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
            "WALLET_TEST_DB_NAME": connection.settings_dict["NAME"],
        }
        subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)  # noqa: S603

        third = login(api_client, "alice", "wrong")

        assert third.status_code == 401
        assert login(api_client, "alice", "alice-password-1").status_code == 429


class TestClientAddress:
    @pytest.mark.parametrize(
        ("proxies", "forwarded", "expected"),
        [
            (0, "198.51.100.1", "10.0.0.2"),  # no trusted proxy: the header is the client's to forge
            (1, "198.51.100.1", "198.51.100.1"),
            (1, "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the left entry was forged
            (2, "198.51.100.1, 10.0.0.3", "198.51.100.1"),
            (1, "not-an-ip", "not-an-ip"),
        ],
    )
    def test_trusts_x_forwarded_for_only_as_far_as_the_configured_proxies(self, settings, proxies, forwarded, expected):
        settings.LOGIN_TRUSTED_PROXIES = proxies
        request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=forwarded)

        assert login_throttle.client_address(request) == expected

    def test_counts_an_ipv6_client_by_its_64_network(self):
        one = RequestFactory().post("/", REMOTE_ADDR="2001:db8:1:2::1")
        other = RequestFactory().post("/", REMOTE_ADDR="2001:db8:1:2:ffff::9")

        assert login_throttle.client_address(one) == login_throttle.client_address(other) == "2001:db8:1:2::/64"
