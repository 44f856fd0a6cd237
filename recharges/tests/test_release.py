"""Ops credit a deposit held by a coin rule (above the maximum, recharge disabled) after review."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig, Switch
from recharges import services as recharges_services
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address
from recharges.tests.fakechain import FakeChain, transfer
from recharges.tests.helpers import available, tick
from wallet_project.errors import Conflict, WalletError

ONE_ETH = 10**18


def held_deposit(chain, user, now, *, amount: int = 6) -> RechargeRecord:
    CoinConfig.objects.filter(coin_id="ETH").update(max_recharge_amount=Decimal(5))
    chain.mine([transfer(to=deposit_address(user=user).address, amount=amount * ONE_ETH)], count=3)
    tick(chain, now)
    record = RechargeRecord.objects.get()
    assert record.status == RechargeStatus.ABOVE_MAXIMUM
    return record


class TestDepositRelease:
    def test_credits_a_held_deposit_once_with_the_decision_in_the_flow(self, chain, user, now):
        record = held_deposit(chain, user, now)

        released = recharges_services.deposit_release(
            record_id=record.id, operator="ops-anna", remark="KYC checked, ticket 42", now=now, adapter=chain
        )
        with pytest.raises(Conflict, match="confirmed and credited"):
            recharges_services.deposit_release(
                record_id=record.id, operator="ops-ben", remark="again", now=now, adapter=chain
            )

        assert released.status == RechargeStatus.CONFIRMED
        assert available(user, "ETH") == Decimal(6)
        flow = Flow.objects.get()
        assert (flow.business_type, flow.biz_ref) == (BusinessType.RECHARGE, record.recharge_no)
        assert flow.memo == f"deposit {record.recharge_no} released by ops-anna: KYC checked, ticket 42"
        recharge_events = [m.payload["body"] for m in OutboxMessage.objects.filter(tags="WALLET_RECHARGE")]
        assert recharge_events == [
            {**recharge_events[0], "recharge_no": record.recharge_no, "status": int(RechargeStatus.CONFIRMED)}
        ]
        assert assets_selectors.ledger_mismatches() == []

    def test_refuses_without_a_remark_and_leaves_pending_or_small_deposits_alone(self, chain, user, now):
        CoinConfig.objects.filter(coin_id="ETH").update(max_recharge_amount=Decimal(5))
        address = deposit_address(user=user).address
        chain.mine([transfer(to=address, amount=10**14)], count=3)  # below the minimum
        chain.mine([transfer(to=address, amount=6 * ONE_ETH, index=1)])  # above the maximum, still pending
        tick(chain, now)
        small = RechargeRecord.objects.get(status=RechargeStatus.BELOW_MINIMUM)
        pending = RechargeRecord.objects.get(status=RechargeStatus.PENDING)

        with pytest.raises(WalletError) as refused:
            recharges_services.deposit_release(
                record_id=pending.id, operator="ops-anna", remark="  ", now=now, adapter=chain
            )
        assert refused.value.field == "remark"
        for record in (small, pending):
            with pytest.raises(Conflict):
                recharges_services.deposit_release(
                    record_id=record.id, operator="ops-anna", remark="ok", now=now, adapter=chain
                )

        assert Flow.objects.count() == 0
        assert set(RechargeRecord.objects.values_list("status", flat=True)) == {
            RechargeStatus.BELOW_MINIMUM,
            RechargeStatus.PENDING,
        }

    def test_a_released_deposit_orphaned_by_a_reorg_is_reversed_like_any_credit(self, chain, user, now):
        record = held_deposit(chain, user, now)
        recharges_services.deposit_release(
            record_id=record.id, operator="ops-anna", remark="checked", now=now, adapter=chain
        )

        chain.reorg(depth=3, branch=[[], [], [], []])
        tick(chain, now)

        record.refresh_from_db()
        assert record.status == RechargeStatus.REORGED
        assert available(user, "ETH") == Decimal(0)
        assert Flow.objects.filter(business_type=BusinessType.REORG_REVERSAL).count() == 1
        assert assets_selectors.ledger_mismatches() == []

    def test_refuses_a_deposit_whose_block_the_node_dropped_before_the_scanner_noticed(self, chain, user, now):
        record = held_deposit(chain, user, now)
        chain.reorg(depth=3, branch=[[], [], [], []])

        with pytest.raises(Conflict, match="no longer on the chain"):
            recharges_services.deposit_release(
                record_id=record.id, operator="ops-anna", remark="checked", now=now, adapter=chain
            )

        assert Flow.objects.count() == 0

    def test_refuses_to_credit_below_the_minimum_whatever_held_it(self, chain, user, now):
        CoinConfig.objects.filter(coin_id="ETH").update(recharge_enabled=Switch.DISABLED)
        chain.mine([transfer(to=deposit_address(user=user).address, amount=10**12)], count=3)  # 0.000001 ETH
        tick(chain, now)
        record = RechargeRecord.objects.get(status=RechargeStatus.RECHARGE_DISABLED)

        with pytest.raises(Conflict, match="below the minimum"):
            recharges_services.deposit_release(
                record_id=record.id, operator="ops-anna", remark="checked", now=now, adapter=chain
            )

        assert Flow.objects.count() == 0


class TestReleaseInTheAdmin:
    def test_only_an_operator_with_the_permission_credits_and_the_remark_is_required(
        self, chain, user, now, client, monkeypatch
    ):
        record = held_deposit(chain, user, now)
        monkeypatch.setattr("recharges.services.adapter_for", lambda chain_id: chain)
        staff = get_user_model().objects.create_user("ops-carl", password="pw-ops-carl-1", is_staff=True)
        staff.user_permissions.add(Permission.objects.get(codename="view_rechargerecord"))
        client.force_login(staff)
        changelist = "/admin/recharges/rechargerecord/"
        form = {"action": "release", "_selected_action": [record.pk], "apply": "1", "remark": "checked"}

        assert 'value="release"' not in client.get(changelist).content.decode()
        client.post(changelist, form)
        assert available(user, "ETH") == Decimal(0)

        staff.user_permissions.add(Permission.objects.get(codename="release_rechargerecord"))
        staff = get_user_model().objects.get(pk=staff.pk)  # permissions are cached per instance
        client.force_login(staff)
        assert 'value="release"' in client.get(changelist).content.decode()
        review = client.post(changelist, {"action": "release", "_selected_action": [record.pk]})
        assert review.status_code == 200 and record.recharge_no in review.content.decode()
        without_remark = client.post(changelist, {**form, "remark": ""})
        assert without_remark.status_code == 200 and available(user, "ETH") == Decimal(0)

        done = client.post(changelist, form)

        assert done.status_code == 302
        assert available(user, "ETH") == Decimal(6)
        assert Flow.objects.get().memo.endswith("released by ops-carl: checked")
        history = LogEntry.objects.get(object_id=str(record.pk))
        assert (history.user_id, history.change_message) == (staff.pk, "Credited after review: checked")


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_two_operators_releasing_at_once_credit_once(settings, now):
    settings.SCAN_START_HEIGHTS = {"ETH": 0}
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=3)
    owner = get_user_model().objects.create_user("owner")
    chain = FakeChain("ETH")
    record = held_deposit(chain, owner, now)
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def release(operator: str) -> None:
        start.wait(timeout=10)
        try:
            recharges_services.deposit_release(
                record_id=record.id, operator=operator, remark="checked", now=now, adapter=chain
            )
            outcomes.append("credited")
        except Conflict:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=release, args=(name,)) for name in ("ops-a", "ops-b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["credited", "refused"]
    assert available(owner, "ETH") == Decimal(6)
    assert Flow.objects.count() == 1
