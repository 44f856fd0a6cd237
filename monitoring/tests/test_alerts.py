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


class TestAlertRaise:
    def test_counts_repeats_of_an_open_alert_instead_of_opening_another(self):
        first = raise_node_down()
        raise_node_down(message="still unreachable")

        again = raise_node_down(severity=Severity.CRITICAL)

        assert again.id == first.id
        assert Alert.objects.count() == 1
        again.refresh_from_db()
        assert (again.count, again.severity) == (3, Severity.CRITICAL)

    def test_opens_a_new_alert_after_the_old_one_was_acknowledged(self):
        ops = get_user_model().objects.create_user(username="ops")
        first = raise_node_down()
        monitoring_services.alert_acknowledge(alert_id=first.id, user=ops, remark="node restarted")

        second = raise_node_down()

        assert second.id != first.id
        assert list(monitoring_selectors.alert_list_open()) == [second]

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
