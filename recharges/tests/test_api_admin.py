from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django_celery_beat.models import PeriodicTask

from monitoring.models import Alert
from recharges import tasks as recharges_tasks
from recharges.models import RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import transfer
from recharges.tests.helpers import tick

ONE_ETH = 10**18
URL = "/api/v1/wallet/recharges"


class TestRechargeListApi:
    def test_lists_the_callers_deposits_with_live_confirmations(self, chain, user, other_user, auth_client, now):
        mine, theirs = deposit_address(user=user, n=1), deposit_address(user=other_user, n=2)
        chain.mine([transfer(to=mine.address, amount=ONE_ETH), transfer(to=theirs.address, amount=ONE_ETH)])
        chain.mine([transfer(to=mine.address, amount=2 * ONE_ETH)], count=2)
        tick(chain, now)  # block 1 credited (3 confirmations), block 2 pending with 2

        response = auth_client.get(URL)

        assert response.status_code == 200
        rows = response.json()["results"]
        assert [(r["amount"], r["status_name"], r["confirmations"]) for r in rows] == [
            ("2", "PENDING", 2),
            ("1", "CONFIRMED", 3),
        ]
        assert rows[0]["required_confirmations"] == 3

    def test_filters_by_coin_and_status_and_pages_by_cursor(self, chain, user, auth_client, now):
        address = deposit_address(user=user)
        chain.mine([transfer(to=address.address, amount=ONE_ETH, index=i, tx=f"0x{i:064x}") for i in range(3)])
        tick(chain, now)

        pending = auth_client.get(URL, {"coin": "ETH", "status": 1, "page_size": 2}).json()
        none = auth_client.get(URL, {"coin": "BTC"}).json()
        second = auth_client.get(pending["next"]).json()

        assert len(pending["results"]) == 2
        assert none["results"] == []
        assert len(second["results"]) == 1

    def test_refuses_an_unknown_status_and_anonymous_callers(self, auth_client, api_client):
        assert auth_client.get(URL, {"status": 99}).json()["code"] == "invalid"
        assert api_client.get(URL).status_code == 401


class TestAdmin:
    def test_rescan_action_adds_a_missed_deposit_once(self, chain, user, client, now, settings, monkeypatch):
        settings.SCAN_START_HEIGHTS = {"ETH": 0}
        admin_user = get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1")
        client.force_login(admin_user)
        chain.mine([transfer(to="0x" + f"{1:040x}", amount=ONE_ETH)], count=3)
        tick(chain, now)  # nobody owned the address yet: nothing recorded
        deposit_address(user=user, n=1)
        cursor = ScanCursor.objects.get(chain_id="ETH")
        # The admin reaches the chain through the node registry: point it at this test's node.
        monkeypatch.setattr("recharges.services.adapter_for", lambda chain_id: chain)

        for _ in range(2):
            response = client.post(
                "/admin/recharges/scancursor/",
                {
                    "action": "rescan_range",
                    "_selected_action": [cursor.pk],
                    "apply": "1",
                    "from_height": 0,
                    "to_height": 5,
                },
            )
            assert response.status_code == 302

        assert RechargeRecord.objects.get().status == RechargeStatus.PENDING

    def test_rescanning_selected_deposits_reads_their_own_blocks_not_the_span_between(
        self, chain, user, client, now, settings, monkeypatch
    ):
        settings.SCAN_START_HEIGHTS = {"ETH": 0}
        admin_user = get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1")
        client.force_login(admin_user)
        address = deposit_address(user=user, n=1).address
        chain.mine([transfer(to=address, amount=ONE_ETH)], count=1)
        chain.mine([], count=30)
        chain.mine([transfer(to=address, amount=ONE_ETH)], count=1)
        tick(chain, now)
        read: list[int] = []
        real_block = chain.block
        monkeypatch.setattr(chain, "block", lambda height, *a, **k: read.append(height) or real_block(height, *a, **k))
        monkeypatch.setattr("recharges.services.adapter_for", lambda chain_id: chain)

        response = client.post(
            "/admin/recharges/rechargerecord/",
            {"action": "rescan_blocks", "_selected_action": list(RechargeRecord.objects.values_list("pk", flat=True))},
        )

        assert response.status_code == 302
        assert sorted(read) == sorted(RechargeRecord.objects.values_list("block_number", flat=True))

    def test_a_rescan_longer_than_the_limit_is_refused_before_reading_anything(self, chain, now, monkeypatch):
        from recharges import services as recharges_services
        from wallet_project.errors import WalletError

        monkeypatch.setattr("recharges.services.adapter_for", lambda chain_id: pytest.fail("no node call expected"))
        with pytest.raises(WalletError, match="at most 10000 blocks"):
            recharges_services.deposits_rescan_range(
                chain_id="ETH", from_height=0, to_height=recharges_services.RESCAN_MAX_BLOCKS, now=now
            )

    def test_pages_show_deposits_holds_and_cursors(self, client, db):
        admin_user = get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1")
        client.force_login(admin_user)

        for page in ("recharges/rechargerecord/", "recharges/accounthold/", "recharges/scancursor/"):
            assert client.get(f"/admin/{page}").status_code == 200


class TestBeatAndTasks:
    def test_setup_beat_schedules_registers_a_scan_and_a_confirm_task_per_chain(self, db, settings):
        settings.SCAN_CHAINS = ["BTC", "ETH"]
        settings.SCAN_INTERVAL_SECONDS = 30

        call_command("setup_beat_schedules", stdout=io.StringIO())
        call_command("setup_beat_schedules", stdout=io.StringIO())

        task = PeriodicTask.objects.get(name="deposits-scan-ETH")
        assert (task.task, task.interval.every, task.kwargs) == (
            "recharges.tasks.deposits_scan",
            30,
            '{"chain_id": "ETH"}',
        )
        assert PeriodicTask.objects.filter(name__startswith="deposits-").count() == 4
        reconcile = PeriodicTask.objects.get(name="reconcile-USDT-ERC20")  # one per coin
        assert (reconcile.task, reconcile.kwargs) == ("monitoring.tasks.reconcile", '{"coin_id": "USDT-ERC20"}')
        assert PeriodicTask.objects.filter(name__startswith="reconcile-").count() == 5

    def test_a_misconfigured_chain_is_alerted_by_its_task_without_raising(self, db):
        recharges_tasks.deposits_scan(chain_id="DOGE")

        assert Alert.objects.filter(kind="NODE_DOWN", subject="chain DOGE").exists() is True
