"""
The sweep planner (database only: credited deposits against what was swept, thresholds, costs, one
open job per address), and what ops do: pause a coin's sweeps, retry a failed one, in the admin.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.test import Client
from django.utils import timezone

from addresses.models import AddressType, WalletAddress
from coins.models import CoinConfig
from recharges.models import RechargeRecord, RechargeStatus
from sweeps import planning
from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepOpsLog, SweepStatus
from wallet_project import roles
from wallet_project.errors import Conflict, WalletError

pytestmark = pytest.mark.django_db
HOT = "0x" + "ab" * 20
_n = itertools.count(1)


def deposit_row(name: str) -> WalletAddress:
    user = get_user_model().objects.create_user(name)
    return WalletAddress.objects.create(
        coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT,
        address="0x" + secrets.token_hex(20), user=user,
    )  # fmt: skip


def credited(row: WalletAddress, coin_id: str, amount: str, status: int = RechargeStatus.CONFIRMED) -> None:
    RechargeRecord.objects.create(
        recharge_no=f"R{next(_n):020d}", user=row.user, coin_id=coin_id, coin_name=coin_id,
        tx_hash="0x" + secrets.token_hex(32), to_address=row.address, from_address="0x" + "11" * 20,
        amount=Decimal(amount), status=status,
    )  # fmt: skip


def plan(cost: str = "0.001") -> int:
    return planning.sweeps_plan(chain_id="ETH", now=timezone.now(), cost={"ETH": Decimal(cost)}, to_address=HOT)


def test_plans_addresses_past_the_threshold_and_worth_their_cost_one_job_each_native_first():
    both, token_only, below, dust, orphaned = (deposit_row(n) for n in ("both", "token", "below", "dust", "orphan"))
    credited(both, "ETH", "1")
    credited(both, "USDT-ERC20", "500")
    credited(token_only, "USDT-ERC20", "20")
    credited(below, "USDT-ERC20", "9.99")  # threshold 10
    CoinConfig.objects.filter(coin_id="ETH").update(sweep_threshold=Decimal("0.0001"))
    credited(dust, "ETH", "0.0005")  # past the threshold, not worth the 0.001 sweeping costs
    credited(orphaned, "ETH", "5", status=RechargeStatus.REORGED)

    created = plan()

    jobs = {(j.from_address, j.coin_id): j for j in SweepJob.objects.all()}
    assert created == 2 and set(jobs) == {(both.address, "ETH"), (token_only.address, "USDT-ERC20")}
    assert jobs[(both.address, "ETH")].planned_amount == Decimal(1)
    assert {j.status for j in jobs.values()} == {SweepStatus.PLANNED} and {j.to_address for j in jobs.values()} == {HOT}
    assert plan() == 0  # each address has its open job: planned once


def test_counts_only_what_arrived_since_the_last_sweep_and_plans_a_failed_one_again():
    row = deposit_row("again")
    credited(row, "ETH", "1")
    plan()
    job = SweepJob.objects.get()
    SweepJob.objects.filter(id=job.id).update(status=SweepStatus.CONFIRMED, open_key=None)
    credited(row, "ETH", "0.005")  # below the threshold of 0.01 on its own

    assert plan() == 0
    credited(row, "ETH", "0.006")
    assert plan() == 1
    assert SweepJob.objects.get(status=SweepStatus.PLANNED).planned_amount == Decimal("0.011")
    SweepJob.objects.filter(status=SweepStatus.PLANNED).update(status=SweepStatus.FAILED, open_key=None)
    assert plan() == 1  # what a failed sweep did not move is planned again


def test_a_paused_coin_is_not_planned_until_resumed_and_each_change_is_logged(staff_roles):
    person = get_user_model().objects.create_user("ops", is_staff=True)
    row = deposit_row("paused")
    credited(row, "ETH", "2")

    sweeps_services.sweeps_pause(coin_id="ETH", paused=True, user=person, remark="node maintenance")
    paused = plan()
    sweeps_services.sweeps_pause(coin_id="ETH", paused=False, user=person, remark="maintenance over")
    resumed = plan()

    assert (paused, resumed) == (0, 1)
    assert list(SweepOpsLog.objects.order_by("id").values_list("action", "remark")) == [
        ("pause", "node maintenance"),
        ("resume", "maintenance over"),
    ]
    with pytest.raises(WalletError):
        sweeps_services.sweeps_pause(coin_id="ETH", paused=True, user=person, remark=" ")


def test_a_failed_sweep_is_retried_as_a_new_job_once(staff_roles):
    person = get_user_model().objects.create_user("ops", is_staff=True)
    row = deposit_row("retry")
    credited(row, "USDT-ERC20", "50")
    plan()
    failed = SweepJob.objects.get()
    SweepJob.objects.filter(id=failed.id).update(status=SweepStatus.FAILED, open_key=None, reason="reverted")

    again = sweeps_services.sweep_retry(job_id=failed.id, user=person, remark="token unpaused by its issuer")

    assert (again.status, again.from_address, again.retried_by) == (SweepStatus.PLANNED, row.address, person)
    with pytest.raises(Conflict):
        sweeps_services.sweep_retry(job_id=failed.id, user=person, remark="twice")  # the address has an open job
    with pytest.raises(Conflict):
        sweeps_services.sweep_retry(job_id=again.id, user=person, remark="not failed")
    assert SweepOpsLog.objects.filter(action="retry").count() == 1


def test_operators_see_sweeps_read_only_and_retry_with_a_remark_auditors_only_look(staff_roles):
    operator = get_user_model().objects.create_user("op", password="pw-op-1", is_staff=True)
    operator.groups.add(Group.objects.get(name=roles.OPERATORS))
    auditor = get_user_model().objects.create_user("au", password="pw-au-1", is_staff=True)
    auditor.groups.add(Group.objects.get(name=roles.AUDITORS))
    row = deposit_row("admin")
    credited(row, "ETH", "3")
    plan()
    job = SweepJob.objects.get()
    SweepJob.objects.filter(id=job.id).update(status=SweepStatus.FAILED, open_key=None, reason="reverted")
    ops, looks = Client(), Client()
    ops.force_login(get_user_model().objects.get(pk=operator.pk))
    looks.force_login(get_user_model().objects.get(pk=auditor.pk))

    listing = ops.get("/admin/sweeps/sweepjob/")
    page = ops.get(f"/admin/sweeps/sweepjob/{job.id}/change/")
    ops.post(f"/admin/sweeps/sweepjob/{job.id}/change/", {"status": "CONFIRMED"})
    confirm = ops.post("/admin/sweeps/sweepjob/", {"action": "retry", "_selected_action": [job.id]})
    ops.post(
        "/admin/sweeps/sweepjob/", {"action": "retry", "_selected_action": [job.id], "apply": "1", "remark": "fixed"}
    )
    auditor_tries = looks.post(
        "/admin/sweeps/sweepjob/", {"action": "retry", "_selected_action": [job.id], "apply": "1", "remark": "x"}
    )

    assert listing.status_code == 200 and job.job_no.encode() in listing.content
    assert page.status_code == 200 and b"reverted" in page.content
    assert confirm.status_code == 200 and b"remark" in confirm.content
    assert SweepJob.objects.get(id=job.id).status == SweepStatus.FAILED  # the form saves nothing
    assert SweepJob.objects.filter(status=SweepStatus.PLANNED, retried_by=operator).count() == 1
    assert auditor_tries.status_code in (200, 302) and SweepOpsLog.objects.filter(action="retry").count() == 1
    assert looks.get("/admin/sweeps/sweepjob/").status_code == 200


def test_stores_every_value_exactly_whatever_the_address_text_or_the_amount_precision():
    # Addresses come from our own table, yet the insert escapes them as the driver does: a quote
    # or a backslash in one must land as it is, not end the statement or change the open key.
    odd = deposit_row("odd")
    WalletAddress.objects.filter(id=odd.id).update(address="0xab'cd\\ef\"--")
    odd.refresh_from_db()
    # One wei: an exponent literal would be read as a float (SQLite keeps REAL: there a coarser one).
    tail = "0.000000000000000001" if connection.vendor == "mysql" else "0.25"
    credited(odd, "ETH", "1.5")
    credited(odd, "ETH", tail)
    moment = timezone.now()

    created = planning.sweeps_plan(chain_id="ETH", now=moment, cost={"ETH": Decimal("0.001")}, to_address=HOT)

    job = SweepJob.objects.get()
    assert created == 1
    assert job.from_address == "0xab'cd\\ef\"--" and job.open_key == "ETH|0xab'cd\\ef\"--"
    assert job.planned_amount == Decimal("1.5") + Decimal(tail) == job.credited_mark
    assert job.address_id == odd.id and job.to_address == HOT and job.coin_id == "ETH"
    assert job.create_time == moment == job.update_time
    assert len(job.job_no) == 32 and job.job_no.startswith(f"S{moment:%Y%m%d%H%M%S%f}")


def test_an_address_another_planner_took_meanwhile_is_skipped_and_the_others_are_planned(monkeypatch):
    taken, free = deposit_row("taken"), deposit_row("free")
    credited(taken, "ETH", "1")
    credited(free, "ETH", "2")
    SweepJob.objects.create(
        job_no="S" + "1" * 31, chain_id="ETH", coin_id="ETH", address=taken, from_address=taken.address,
        to_address=HOT, open_key=f"ETH|{taken.address}", create_time=timezone.now(), update_time=timezone.now(),
    )  # fmt: skip
    # As if the other planner's job committed after this one read the open jobs.
    monkeypatch.setattr(planning, "_marks_busy", lambda chain_id: ({}, set()))

    assert plan() == 1
    assert set(SweepJob.objects.values_list("from_address", "status")) == {
        (taken.address, SweepStatus.PLANNED),
        (free.address, SweepStatus.PLANNED),
    }
    assert SweepJob.objects.filter(from_address=taken.address).count() == 1  # one open job per address


def _open_job(row: WalletAddress) -> SweepJob:
    now = timezone.now()
    return SweepJob.objects.create(
        job_no="S" + secrets.token_hex(8), chain_id="ETH", coin_id="ETH", address=row, from_address=row.address,
        to_address=HOT, open_key=f"ETH|{row.address}", create_time=now, update_time=now,
    )  # fmt: skip


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_a_planner_picked_as_the_deadlock_victim_of_another_planner_plans_again_and_does_not_crash():
    first, second = deposit_row("dl-first"), deposit_row("dl-second")
    others = [deposit_row(f"dl-other-{i}") for i in range(4)]
    credited(first, "ETH", "1")
    credited(second, "ETH", "2")
    outcome: list[object] = []

    def planner() -> None:
        try:
            outcome.append(plan())
        except Exception as exc:  # the run's crash, shown by the assertion
            outcome.append(exc)
        finally:
            connection.close()

    # Another planner's insert, in the other order and holding more rows: this one inserts `first`,
    # then waits for `second`, which the other holds, and the other then wants `first`.
    with transaction.atomic(durable=True):
        for row in [*others, second]:
            _open_job(row)
        thread = threading.Thread(target=planner)
        thread.start()
        time.sleep(1)
        _open_job(first)
    thread.join(timeout=30)

    assert outcome == [0]  # rolled back as the victim, inserted again: both addresses were taken
    assert SweepJob.objects.filter(address__in=[first, second]).count() == 2  # one open job each
