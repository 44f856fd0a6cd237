from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from monitoring import selectors as monitoring_selectors
from monitoring import services as monitoring_services
from monitoring.models import Alert, Severity
from wallet_project.errors import WalletError

pytestmark = pytest.mark.django_db


def raise_node_down(message="ETH node unreachable", severity=Severity.WARNING):
    return monitoring_services.alert_raise(severity=severity, kind="NODE_DOWN", subject="chain:ETH", message=message)


def raise_deep_reorg():
    return monitoring_services.alert_raise(
        severity=Severity.CRITICAL, kind="DEEP_REORG", subject="chain ETH", message="credited deposits orphaned"
    )


class TestAlertRaise:
    def test_counts_repeats_of_an_open_alert_instead_of_opening_another(self):
        first = raise_node_down()
        raise_node_down(message="still unreachable")

        again = raise_node_down(severity=Severity.CRITICAL)

        assert again.id == first.id
        assert Alert.objects.count() == 1
        again.refresh_from_db()
        assert (again.count, again.severity) == (3, Severity.CRITICAL)

    def test_opens_a_new_alert_after_a_person_closed_the_old_one(self):
        ops = get_user_model().objects.create_user(username="ops")
        first = raise_deep_reorg()
        monitoring_services.alert_acknowledge(alert_id=first.id, user=ops, remark="reorg reviewed")

        second = raise_deep_reorg()

        assert second.id != first.id
        assert list(monitoring_selectors.alert_list_open()) == [second]

    def test_an_acknowledged_alert_that_resolves_itself_absorbs_repeats_until_its_condition_clears(self):
        ops = get_user_model().objects.create_user(username="ops")
        first = raise_node_down()
        monitoring_services.alert_acknowledge(alert_id=first.id, user=ops, remark="node restarted")

        again = raise_node_down()
        monitoring_services.alert_resolve(kind="NODE_DOWN", subject="chain:ETH", how="the node answered")
        after = raise_node_down()

        assert again.id == first.id
        first.refresh_from_db()
        assert (first.count, first.resolved_how) == (2, "the node answered")
        assert after.id != first.id

    def test_resolving_records_when_and_how_and_frees_the_subject(self):
        alert = raise_node_down()

        (resolved,) = monitoring_services.alert_resolve(
            kind="NODE_DOWN", subject="chain:ETH", how="the node answered at 10:00"
        )

        assert resolved.id == alert.id
        alert.refresh_from_db()
        assert alert.resolved_at is not None and alert.resolved_how == "the node answered at 10:00"
        assert alert.open_key is None
        assert list(monitoring_selectors.alert_list_open()) == []
        assert monitoring_services.alert_resolve(kind="NODE_DOWN", subject="chain:ETH", how="again") == []

    def test_takes_the_kinds_default_severity_when_none_is_given(self):
        alert = monitoring_services.alert_raise(kind="WITHDRAW_STUCK", subject="withdrawal W1", message="unmined")

        assert alert.severity == Severity.CRITICAL

    def test_refuses_to_acknowledge_twice(self):
        ops = get_user_model().objects.create_user(username="ops")
        alert = raise_node_down()
        monitoring_services.alert_acknowledge(alert_id=alert.id, user=ops, remark="node restarted")

        with pytest.raises(WalletError):
            monitoring_services.alert_acknowledge(alert_id=alert.id, user=ops, remark="again")

    def test_refuses_to_acknowledge_without_a_remark(self):
        ops = get_user_model().objects.create_user(username="ops")
        alert = raise_node_down()

        with pytest.raises(WalletError) as refused:
            monitoring_services.alert_acknowledge(alert_id=alert.id, user=ops, remark="  ")

        assert refused.value.field == "remark"
        alert.refresh_from_db()
        assert alert.is_open is True

    def test_redacts_secrets_from_the_message(self):
        alert = raise_node_down(message="rpc failed password=test-only-secret")

        assert "test-only-secret" not in alert.message


class TestAlertAdmin:
    def test_acknowledge_asks_for_a_remark_then_closes_the_alerts_with_who_when_and_why(self, admin_client, admin_user):
        alert = raise_node_down()
        chosen = {"action": "acknowledge", "_selected_action": [alert.id]}

        asked = admin_client.post("/admin/monitoring/alert/", chosen)
        blank = admin_client.post("/admin/monitoring/alert/", {**chosen, "apply": "1", "remark": ""})
        alert.refresh_from_db()
        still_open = alert.is_open
        done = admin_client.post(
            "/admin/monitoring/alert/", {**chosen, "apply": "1", "remark": "node restarted by ops"}, follow=True
        )

        assert asked.status_code == 200 and b'name="remark"' in asked.content
        assert blank.status_code == 200 and still_open is True
        assert done.status_code == 200
        alert.refresh_from_db()
        assert (alert.acknowledged_by, alert.acknowledge_remark) == (admin_user, "node restarted by ops")
        assert alert.acknowledged_at is not None and alert.open_key is None

    def test_a_staff_member_without_the_acknowledge_permission_cannot_close_an_alert(self, client):
        viewer = get_user_model().objects.create_user("viewer", password="viewer-password-1", is_staff=True)
        viewer.user_permissions.set(Permission.objects.filter(codename="view_alert"))
        client.force_login(viewer)
        alert = raise_node_down(severity=Severity.CRITICAL)

        client.post(
            "/admin/monitoring/alert/",
            {"action": "acknowledge", "_selected_action": [alert.id], "apply": "1", "remark": "not mine to close"},
        )

        alert.refresh_from_db()
        assert alert.is_open is True

    def test_the_acknowledge_permission_is_enough(self, client):
        ops = get_user_model().objects.create_user("ops", password="ops-password-1", is_staff=True)
        ops.user_permissions.set(Permission.objects.filter(codename__in=["view_alert", "acknowledge_alert"]))
        client.force_login(ops)
        alert = raise_node_down(severity=Severity.CRITICAL)

        client.post(
            "/admin/monitoring/alert/",
            {"action": "acknowledge", "_selected_action": [alert.id], "apply": "1", "remark": "fixed the node"},
        )

        alert.refresh_from_db()
        assert (alert.acknowledged_by, alert.acknowledge_remark) == (ops, "fixed the node")

    def test_the_alert_page_says_what_to_do_and_lists_its_deliveries_read_only(self, admin_client, settings):
        settings.ALERT_WEBHOOK_URL = "http://127.0.0.1:9/hook"
        settings.ALERT_WEBHOOK_SECRET = "test-only-secret"
        alert = raise_node_down()

        page = admin_client.get(f"/admin/monitoring/alert/{alert.id}/change/").content.decode()
        log = admin_client.get("/admin/monitoring/alertdelivery/")

        assert "The chain&#x27;s node did not answer" in page
        assert "WEBHOOK" in page and "pending (sent by the next run)" in page
        assert log.status_code == 200
        assert admin_client.get("/admin/monitoring/alertdelivery/add/").status_code == 403

    def test_lists_resolved_alerts_apart_from_open_ones(self, admin_client):
        raise_node_down()
        monitoring_services.alert_resolve(kind="NODE_DOWN", subject="chain:ETH", how="the node answered")
        raise_deep_reorg()

        open_page = admin_client.get("/admin/monitoring/alert/?state=open").content.decode()
        resolved_page = admin_client.get("/admin/monitoring/alert/?state=resolved").content.decode()

        assert "chain ETH" in open_page and "chain:ETH" not in open_page  # the reorg's subject, the node's
        assert "chain:ETH" in resolved_page and "chain ETH" not in resolved_page


@pytest.mark.parametrize("label", ["AlertDelivery", "ChainTip", "HotBalance", "BackupRun"])
def test_the_monitoring_records_cannot_be_added_changed_or_deleted_in_the_admin(label, rf, admin_user):
    from django.apps import apps
    from django.contrib import admin

    model_admin = admin.site._registry[apps.get_model("monitoring", label)]
    request = rf.get("/")
    request.user = admin_user

    allowed = (
        model_admin.has_add_permission(request),
        model_admin.has_change_permission(request),
        model_admin.has_delete_permission(request),
    )

    assert allowed == (False, False, False)
