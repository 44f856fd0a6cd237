"""
Circuit breakers: tripped by a service (reconciliation, payout, scanner), by ops in the admin and
through the ops API, each with a critical alert; cleared only by an approved proposal of a second
person, never by its proposer, and never over a trip that came after the proposal.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from coins.models import CoinConfig
from controls import breakers, proposals, selectors
from controls.models import BreakerAction, BreakerLog, ChangeStatus, CoinBreaker, SettingsChange
from monitoring.models import Alert, Severity
from wallet_project import roles
from wallet_project.errors import Conflict, WalletError

pytestmark = pytest.mark.django_db

COINS = "/admin/coins/coinconfig/"
CHANGES = "/admin/controls/settingschange/"


def operator(name: str):
    person = get_user_model().objects.create_user(name, password=f"pw-{name}-1", is_staff=True)
    person.groups.add(Group.objects.get(name=roles.OPERATORS))
    return get_user_model().objects.get(pk=person.pk)  # permissions are cached per instance


def logged_in(person) -> Client:
    client = Client()
    client.force_login(person)
    return client


def api(person) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(person).access_token}")
    return client


@pytest.fixture
def anna(staff_roles):
    return operator("ops-anna")


@pytest.fixture
def carl(staff_roles):
    return operator("ops-carl")


class TestTrip:
    def test_a_service_trip_stops_the_coin_with_one_critical_alert_and_counts_repeats(self):
        breakers.breaker_trip(coin_id="ETH", reason="ledger 3 ETH above chain", source="RECONCILIATION")
        breakers.breaker_trip(coin_id="ETH", reason="ledger 3 ETH above chain", source="RECONCILIATION")

        breaker = CoinBreaker.objects.get(coin_id="ETH")
        assert (breaker.tripped, breaker.trip_count, breaker.source) == (True, 2, "RECONCILIATION")
        assert selectors.breaker_tripped(coin_id="ETH") is True
        assert selectors.breaker_tripped(coin_id="USDT-ERC20") is False
        alert = Alert.objects.get(kind="BREAKER_TRIPPED")
        assert (alert.severity, alert.subject, alert.count) == (Severity.CRITICAL, "coin ETH", 2)
        assert list(BreakerLog.objects.order_by("id").values_list("action", flat=True)) == [
            BreakerAction.TRIP,
            BreakerAction.REPEAT,
        ]

    @pytest.mark.parametrize(
        ("kwargs", "code"),
        [
            ({"coin_id": "ETH", "reason": " ", "source": "OPS"}, "reason_required"),
            ({"coin_id": "ETH", "reason": "x", "source": "MOOD"}, "invalid_source"),
            ({"coin_id": "DOGE", "reason": "x", "source": "OPS"}, "unknown_coin"),
        ],
        ids=["no-reason", "bad-source", "unknown-coin"],
    )
    def test_a_trip_without_a_reason_a_known_source_or_a_known_coin_is_refused(self, kwargs, code):
        with pytest.raises(WalletError) as refused, transaction.atomic():
            breakers.breaker_trip(**kwargs)

        assert refused.value.code == code
        assert not CoinBreaker.objects.exists() and not Alert.objects.exists()

    def test_ops_trip_it_in_the_admin_with_the_permission_and_a_remark(self, anna):
        viewer = get_user_model().objects.create_user("viewer", is_staff=True)
        viewer.user_permissions.add(Permission.objects.get(codename="view_coinconfig"))
        eth = selectors.breaker_get(coin_id="ETH")  # none yet
        coin = CoinConfig.objects.get(coin_id="ETH")

        logged_in(viewer).post(
            COINS, {"action": "trip_breaker", "_selected_action": [coin.pk], "apply": "1", "remark": "x"}
        )
        page = logged_in(anna).post(COINS, {"action": "trip_breaker", "_selected_action": [coin.pk]})
        done = logged_in(anna).post(
            COINS, {"action": "trip_breaker", "_selected_action": [coin.pk], "apply": "1", "remark": "drained"}
        )

        assert eth is None
        assert page.status_code == 200 and "No withdrawal of these coins is signed" in page.content.decode()
        assert done.status_code == 302
        breaker = CoinBreaker.objects.get(coin_id="ETH")
        assert (breaker.tripped, breaker.source, breaker.tripped_by, breaker.reason) == (True, "OPS", anna, "drained")
        assert "TRIPPED" in logged_in(anna).get(COINS).content.decode()


class TestOpsApi:
    def test_staff_with_the_permission_trip_and_list_breakers(self, anna):
        tripped = api(anna).post(
            "/api/v1/ops/breakers/USDT-TRC20/trip", {"reason": "hot wallet drained"}, format="json"
        )
        listed = api(anna).get("/api/v1/ops/breakers").json()

        assert tripped.status_code == 200
        assert tripped.json()["tripped"] is True and tripped.json()["source"] == "OPS"
        assert {row["coin_id"]: row["tripped"] for row in listed} == {
            "BTC": False,
            "ETH": False,
            "USDT-ERC20": False,
            "TRX": False,
            "USDT-TRC20": True,
        }
        assert CoinBreaker.objects.get(coin_id="USDT-TRC20").tripped_by == anna

    def test_anyone_else_is_refused_and_nothing_trips(self, user, staff_roles):
        auditor = get_user_model().objects.create_user("aud", is_staff=True)
        auditor.groups.add(Group.objects.get(name=roles.AUDITORS))  # may view breakers, not trip them
        customer_with_permission = get_user_model().objects.create_user("cust")
        customer_with_permission.user_permissions.add(Permission.objects.get(codename="trip_coinbreaker"))

        answers = [
            APIClient().post("/api/v1/ops/breakers/ETH/trip", {"reason": "x"}, format="json").status_code,
            api(user).post("/api/v1/ops/breakers/ETH/trip", {"reason": "x"}, format="json").status_code,
            api(auditor).post("/api/v1/ops/breakers/ETH/trip", {"reason": "x"}, format="json").status_code,
            api(customer_with_permission)
            .post("/api/v1/ops/breakers/ETH/trip", {"reason": "x"}, format="json")
            .status_code,
            api(user).get("/api/v1/ops/breakers").status_code,
        ]

        assert answers == [401, 403, 403, 403, 403]
        assert api(auditor).get("/api/v1/ops/breakers").status_code == 200
        assert not CoinBreaker.objects.exists()

    def test_bad_input_is_a_400_with_the_field(self, anna):
        blank = api(anna).post("/api/v1/ops/breakers/ETH/trip", {"reason": ""}, format="json")
        unknown = api(anna).post("/api/v1/ops/breakers/DOGE/trip", {"reason": "x"}, format="json")

        assert (blank.status_code, list(blank.json()["fields"])) == (400, ["reason"])
        assert (unknown.status_code, unknown.json()["code"]) == (400, "unknown_coin")


class TestClear:
    def test_the_proposer_cannot_clear_it_and_nothing_changes_before_a_second_person_approves(self, anna, carl):
        breakers.breaker_trip(coin_id="ETH", reason="mismatch", source="RECONCILIATION")

        change = breakers.breaker_clear_propose(coin_id="ETH", user=anna, remark="missing deposit found and booked")
        with pytest.raises(Conflict) as own:
            proposals.change_approve(change_id=change.id, user=anna)
        still = selectors.breaker_tripped(coin_id="ETH")
        proposals.change_approve(change_id=change.id, user=carl, remark="checked the report")

        assert own.value.code == "own_proposal" and still is True
        breaker = CoinBreaker.objects.get(coin_id="ETH")
        assert (breaker.tripped, breaker.cleared_by) == (False, carl)
        assert breaker.clear_remark == "missing deposit found and booked (proposed by ops-anna, approved by ops-carl)"
        change.refresh_from_db()
        assert (change.status, change.before["tripped"], change.after) == (
            ChangeStatus.APPLIED,
            True,
            {"tripped": False},
        )
        assert (change.proposed_by, change.decided_by, change.reason) == (
            anna,
            carl,
            "missing deposit found and booked",
        )
        assert BreakerLog.objects.filter(action=BreakerAction.CLEAR, user=carl).exists()
        assert Alert.objects.get(kind="BREAKER_TRIPPED").resolved_at is not None

    def test_a_trip_after_the_proposal_makes_it_stale_and_the_breaker_stays_tripped(self, anna, carl):
        breakers.breaker_trip(coin_id="ETH", reason="mismatch", source="RECONCILIATION")
        change = breakers.breaker_clear_propose(coin_id="ETH", user=anna, remark="fixed")
        breakers.breaker_trip(coin_id="ETH", reason="mismatch again", source="RECONCILIATION")

        decided = proposals.change_approve(change_id=change.id, user=carl)

        assert decided.status == ChangeStatus.STALE and "tripped again since the proposal" in decided.decision_remark
        assert selectors.breaker_tripped(coin_id="ETH") is True

    def test_clearing_needs_a_remark_the_permission_and_a_tripped_breaker(self, anna, carl, staff_roles):
        auditor = get_user_model().objects.create_user("aud", is_staff=True)
        auditor.groups.add(Group.objects.get(name=roles.AUDITORS))

        with pytest.raises(Conflict):
            breakers.breaker_clear_propose(coin_id="ETH", user=anna, remark="nothing to clear")
        breakers.breaker_trip(coin_id="ETH", reason="mismatch", source="RECONCILIATION")
        with pytest.raises(WalletError) as blank:
            breakers.breaker_clear_propose(coin_id="ETH", user=anna, remark="  ")
        with pytest.raises(proposals.NotPermitted):
            breakers.breaker_clear_propose(coin_id="ETH", user=auditor, remark="me")
        change = breakers.breaker_clear_propose(coin_id="ETH", user=anna, remark="fixed")
        with pytest.raises(proposals.NotPermitted):
            proposals.change_approve(change_id=change.id, user=auditor)

        assert blank.value.field == "remark"
        assert selectors.breaker_tripped(coin_id="ETH") is True
        assert SettingsChange.objects.get().status == ChangeStatus.PENDING

    def test_in_the_admin_one_operator_proposes_and_another_approves(self, anna, carl):
        breakers.breaker_trip(coin_id="TRX", reason="mismatch", source="RECONCILIATION")
        breaker = CoinBreaker.objects.get(coin_id="TRX")

        logged_in(anna).post(
            "/admin/controls/coinbreaker/",
            {"action": "propose_breaker_clear", "_selected_action": [breaker.pk], "apply": "1", "remark": "fixed"},
        )
        change = SettingsChange.objects.get()
        own = logged_in(anna).post(
            CHANGES, {"action": "approve", "_selected_action": [change.pk], "apply": "1", "remark": ""}, follow=True
        )
        tripped_after_own = selectors.breaker_tripped(coin_id="TRX")
        logged_in(carl).post(
            CHANGES, {"action": "approve", "_selected_action": [change.pk], "apply": "1", "remark": ""}
        )

        assert "a second person must approve it" in own.content.decode()
        assert tripped_after_own is True
        assert selectors.breaker_tripped(coin_id="TRX") is False
        change.refresh_from_db()
        assert (change.kind, change.status, change.decided_by) == ("breaker_clear", ChangeStatus.APPLIED, carl)
