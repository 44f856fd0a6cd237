"""
Ops close a reorg shortfall: settle (paid back off-system) or write off (the exchange's loss), from the
admin. Lifting a hold takes four eyes: one operator proposes it, a second one approves it.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.test import Client

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import BusinessType, Flow, HouseAccount, HouseFlow
from coins.models import CoinConfig
from controls.models import ChangeStatus, SettingsChange
from monitoring.models import Alert, Severity
from recharges import selectors as recharges_selectors
from recharges import services as recharges_services
from recharges import shortfalls
from recharges.models import AccountHold, HoldStatus, RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address, make_user
from recharges.tests.fakechain import FakeChain, transfer
from recharges.tests.helpers import tick
from recharges.tests.test_reorg_debt import ledger_is_consistent, owns, position, withdraw_settled
from wallet_project.errors import Conflict, WalletError

ONE_ETH = 10**18
CHANGELIST = "/admin/recharges/accounthold/"
PROPOSALS = "/admin/controls/settingschange/"


def shortfall(chain, user, now) -> AccountHold:
    """The issue's scenario up to the reorg: 3 ETH credited, 2 withdrawn, the deposit orphaned: 2 owed."""
    chain.mine([transfer(to=deposit_address(user=user).address, amount=3 * ONE_ETH)], count=4)
    tick(chain, now)
    withdraw_settled(user, Decimal(2), "W1")
    chain.reorg(depth=4, branch=[[], [], [], [], []])
    tick(chain, now)
    assert position(user) == (0, 0, Decimal(2))
    return AccountHold.objects.get(status=HoldStatus.ACTIVE)


def operator(name: str, *codenames: str):
    staff = get_user_model().objects.create_user(name, password=f"pw-{name}-1", is_staff=True)
    for codename in ("view_accounthold", *codenames):
        staff.user_permissions.add(Permission.objects.get(codename=codename))
    return get_user_model().objects.get(pk=staff.pk)  # permissions are cached per instance


def post_action(client, action: str, hold: AccountHold, remark: str = "wire 2026-118 received"):
    return client.post(CHANGELIST, {"action": action, "_selected_action": [hold.pk], "apply": "1", "remark": remark})


def approve_all(approver) -> None:
    """A second operator approves every pending proposal in the admin (Risk controls → Proposed changes)."""
    client = Client()
    client.force_login(approver)
    pending = list(SettingsChange.objects.filter(status=ChangeStatus.PENDING).values_list("pk", flat=True))
    client.post(PROPOSALS, {"action": "approve", "_selected_action": pending, "apply": "1", "remark": ""})


def hold_history(hold: AccountHold):
    return LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(AccountHold), object_id=str(hold.pk))


class TestSettleInTheAdmin:
    def test_settles_once_with_the_permission_clearing_the_debt_and_writing_who_when_why(
        self, chain, user, now, client
    ):
        hold = shortfall(chain, user, now)
        ops = operator("ops-anna", "settle_accounthold", "view_settingschange", "decide_settingschange")
        client.force_login(ops)
        assert 'value="settle"' in client.get(CHANGELIST).content.decode()
        assert 'value="write_off"' not in client.get(CHANGELIST).content.decode()
        review = client.post(CHANGELIST, {"action": "settle", "_selected_action": [hold.pk]})
        assert review.status_code == 200 and hold.recharge.recharge_no in review.content.decode()

        done = post_action(client, "settle", hold)
        again = post_action(client, "settle", hold)  # a proposal for the hold waits already
        hold.refresh_from_db()
        assert hold.status == HoldStatus.ACTIVE and position(user) == (0, 0, Decimal(2))  # nothing before approval
        approve_all(ops)  # the proposer's own approval is refused
        assert AccountHold.objects.get(pk=hold.pk).status == HoldStatus.ACTIVE
        approve_all(operator("ops-bob", "settle_accounthold", "view_settingschange", "decide_settingschange"))

        assert (done.status_code, again.status_code) == (302, 302)
        assert SettingsChange.objects.get().status == ChangeStatus.APPLIED
        hold.refresh_from_db()
        bob = get_user_model().objects.get(username="ops-bob")
        assert (hold.status, hold.resolved_by, hold.resolve_remark, hold.resolved_amount) == (
            HoldStatus.SETTLED,
            bob,
            "wire 2026-118 received (proposed by ops-anna)",
            Decimal(2),
        )
        assert hold.resolve_time is not None
        assert position(user) == (0, 0, 0)
        settle = Flow.objects.get(business_type=BusinessType.REORG_DEBT_SETTLE)
        assert (settle.amount, settle.debt_amount, settle.biz_ref) == (0, Decimal(-2), hold.biz_ref)
        assert settle.memo == "reorg shortfall settled by ops-bob: wire 2026-118 received (proposed by ops-anna)"
        history = hold_history(hold).get()
        assert history.user_id == ops.pk and history.change_message.endswith(": wire 2026-118 received")
        assert recharges_selectors.withdrawals_held(user_id=user.id) is False
        # The user's debt is gone, the chain still lacks the coin: the house carries it, once.
        (house,) = HouseFlow.objects.filter(business_type=BusinessType.HOUSE_DEBT_SETTLED_OFF_CHAIN)
        assert (house.account, house.coin_id, house.amount, house.biz_ref) == (
            HouseAccount.TREASURY,
            hold.coin_id,
            Decimal(-2),
            hold.biz_ref,
        )
        shortfalls.account_hold_settle(hold_id=hold.id, operator=bob, remark="again", now=now)
        assert HouseFlow.objects.filter(business_type=BusinessType.HOUSE_DEBT_SETTLED_OFF_CHAIN).count() == 1
        assert assets_selectors.house_mismatches() == []
        ledger_is_consistent()

    def test_refuses_without_the_permission_or_without_a_remark(self, chain, user, now, client):
        hold = shortfall(chain, user, now)
        viewer = operator("ops-ben")
        writer_off = operator("ops-carl", "write_off_accounthold")

        client.force_login(viewer)
        assert 'value="settle"' not in client.get(CHANGELIST).content.decode()
        post_action(client, "settle", hold)
        post_action(client, "write_off", hold)
        client.force_login(writer_off)
        post_action(client, "settle", hold)
        without_remark = post_action(client, "write_off", hold, remark="   ")

        assert without_remark.status_code == 200
        assert not SettingsChange.objects.exists()
        hold.refresh_from_db()
        assert hold.status == HoldStatus.ACTIVE
        assert position(user) == (0, 0, Decimal(2))
        assert not Flow.objects.filter(
            business_type__in=[BusinessType.REORG_DEBT_SETTLE, BusinessType.REORG_DEBT_WRITE_OFF]
        ).exists()
        assert recharges_selectors.withdrawals_held(user_id=user.id) is True
        with pytest.raises(WalletError) as refused:
            shortfalls.account_hold_settle(hold_id=hold.id, operator=viewer, remark=" ", now=now)
        assert refused.value.field == "remark"

    def test_the_only_actions_on_a_hold_clear_its_debt(self, chain, user, now, client, admin_client):
        hold = shortfall(chain, user, now)

        page = admin_client.get(CHANGELIST).content.decode()

        assert 'value="settle"' in page and 'value="write_off"' in page
        assert 'value="resolve"' not in page and 'value="delete_selected"' not in page
        post_action(admin_client, "resolve", hold)
        hold.refresh_from_db()
        assert hold.status == HoldStatus.ACTIVE
        with pytest.raises(IntegrityError), transaction.atomic():  # an ops closure says who, when and why
            AccountHold.objects.filter(id=hold.id).update(status=HoldStatus.SETTLED)


class TestWriteOffInTheAdmin:
    def test_writes_off_once_the_loss_visible_in_a_flow_and_an_alert(self, chain, user, now, client):
        hold = shortfall(chain, user, now)
        ops = operator("ops-dora", "write_off_accounthold", "settle_accounthold")
        client.force_login(ops)

        post_action(client, "write_off", hold, remark="user unreachable, ticket 77")
        post_action(client, "write_off", hold, remark="user unreachable, ticket 77")
        post_action(client, "settle", hold)  # one proposal per hold at a time: refused
        approve_all(operator("ops-erin", "write_off_accounthold", "view_settingschange", "decide_settingschange"))
        post_action(client, "settle", hold)  # closed already: nothing left to propose

        hold.refresh_from_db()
        erin = get_user_model().objects.get(username="ops-erin")
        assert (hold.status, hold.resolved_by, hold.resolved_amount) == (HoldStatus.WRITTEN_OFF, erin, Decimal(2))
        assert list(SettingsChange.objects.values_list("kind", "status")) == [("hold_write_off", ChangeStatus.APPLIED)]
        write_off = Flow.objects.get(business_type=BusinessType.REORG_DEBT_WRITE_OFF)
        assert (write_off.debt_amount, write_off.debt_after) == (Decimal(-2), 0)
        assert not Flow.objects.filter(business_type=BusinessType.REORG_DEBT_SETTLE).exists()
        alert = Alert.objects.get(kind="REORG_DEBT_WRITTEN_OFF")
        assert alert.severity == Severity.WARNING
        assert "(2 ETH" in alert.message
        assert "ops-erin: user unreachable, ticket 77 (proposed by ops-dora)" in alert.message
        assert hold_history(hold).count() == 1  # the proposal; the approval is in the proposal's history
        assert owns(user) == 0  # the user keeps the 2 ETH they withdrew: the exchange carries it
        loss = HouseFlow.objects.get(business_type=BusinessType.HOUSE_REORG_LOSS)  # once, though asked twice
        assert (loss.account, loss.coin_id, loss.amount) == (HouseAccount.LOSSES, "ETH", Decimal(-2))
        assert assets_selectors.house_balances(coin_id="ETH") == {HouseAccount.LOSSES: Decimal(-2)}
        with pytest.raises(Conflict):
            shortfalls.account_hold_settle(hold_id=hold.id, operator=ops, remark="late", now=now)
        ledger_is_consistent()
        assert assets_selectors.house_mismatches() == []


class TestHoldsClosing:
    def test_settling_one_hold_clears_the_whole_debt_of_the_user_and_coin_and_closes_all_its_holds(
        self, chain, user, now
    ):
        address = deposit_address(user=user).address
        chain.mine([transfer(to=address, amount=3 * ONE_ETH), transfer(to=address, amount=2 * ONE_ETH)], count=4)
        tick(chain, now)
        withdraw_settled(user, Decimal(5), "W1")
        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)
        first, second = AccountHold.objects.order_by("id")
        ops = operator("ops-eve", "settle_accounthold")

        shortfalls.account_hold_settle(hold_id=second.id, operator=ops, remark="paid 5 ETH back", now=now)

        assert position(user) == (0, 0, 0)
        first.refresh_from_db()
        second.refresh_from_db()
        assert (first.status, second.status) == (HoldStatus.SETTLED, HoldStatus.SETTLED)
        assert (second.resolved_amount, first.resolved_amount) == (Decimal(5), 0)
        assert first.resolve_remark == f"paid 5 ETH back (with hold {second.id})"
        ledger_is_consistent()

    def test_a_debt_repaid_by_a_released_withdrawal_frees_withdrawals_at_once_and_the_hold_at_the_next_tick(
        self, chain, user, now
    ):
        chain.mine([transfer(to=deposit_address(user=user).address, amount=3 * ONE_ETH)], count=4)
        tick(chain, now)
        eth = CoinConfig.objects.get(coin_id="ETH")
        with transaction.atomic():  # a 3 ETH withdrawal applied, waiting
            assets_services.balance_freeze(
                user_id=user.id, coin=eth, amount=Decimal(3), business_type=BusinessType.WITHDRAW_FREEZE, biz_ref="W1"
            )
        chain.reorg(depth=4, branch=[[], [], [], [], []])
        tick(chain, now)
        assert position(user) == (0, Decimal(3), Decimal(3))
        assert recharges_selectors.withdrawals_held(user_id=user.id) is True

        with transaction.atomic():  # the auditor rejects the held withdrawal
            assets_services.balance_unfreeze(
                user_id=user.id, coin=eth, amount=Decimal(3), business_type=BusinessType.WITHDRAW_UNFREEZE, biz_ref="W1"
            )

        assert position(user) == (0, 0, 0)
        assert recharges_selectors.withdrawals_held(user_id=user.id) is False
        assert AccountHold.objects.get().status == HoldStatus.ACTIVE
        tick(chain, now)
        assert AccountHold.objects.get().status == HoldStatus.REPAID
        ledger_is_consistent()

    def test_settling_a_hold_made_before_debts_were_booked_takes_its_freeze_and_leaves_nothing_frozen(
        self, chain, user, now
    ):
        chain.mine([transfer(to=deposit_address(user=user).address, amount=3 * ONE_ETH)], count=4)
        tick(chain, now)
        record = RechargeRecord.objects.get()
        eth = CoinConfig.objects.get(coin_id="ETH")
        with transaction.atomic():  # what the former reversal left: 1 frozen, 2 owed outside the ledger
            withdraw_settled(user, Decimal(2), "W1")
            assets_services.balance_freeze(
                user_id=user.id,
                coin=eth,
                amount=Decimal(1),
                business_type=BusinessType.REORG_FREEZE,
                biz_ref=record.biz_ref,
            )
            RechargeRecord.objects.filter(id=record.id).update(status=RechargeStatus.REORGED)
            hold = AccountHold.objects.create(
                user=user, coin=eth, recharge=record, biz_ref=record.biz_ref, amount=3, frozen_amount=1, shortfall=2,
                reason="orphaned",
            )  # fmt: skip
        assert recharges_selectors.withdrawals_held(user_id=user.id) is True

        shortfalls.account_hold_write_off(hold_id=hold.id, operator=user, remark="written off", now=now)

        assert position(user) == (0, 0, 0)
        hold.refresh_from_db()
        assert (hold.status, hold.resolved_amount) == (HoldStatus.WRITTEN_OFF, Decimal(2))
        taken = Flow.objects.get(business_type=BusinessType.REORG_REVERSAL)
        assert (taken.amount, taken.frozen_amount) == (0, Decimal(-1))
        assert recharges_selectors.withdrawals_held(user_id=user.id) is False
        ledger_is_consistent()


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("close", [shortfalls.account_hold_settle, shortfalls.account_hold_write_off])
@pytest.mark.parametrize("first", ["ops", "credit"])
def test_closing_a_shortfall_racing_a_deposit_of_the_same_user_leaves_one_consistent_ledger(
    settings, now, close, first
):
    settings.SCAN_START_HEIGHTS = {"ETH": 0}
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=3)
    chain = FakeChain("ETH")
    owner = make_user("owner")
    ops = make_user("ops-fay")
    hold = shortfall(chain, owner, now)
    chain.mine([transfer(to=hold.recharge.to_address, amount=ONE_ETH)])  # 1 of the 2 owed
    chain.mine(count=3)
    recharges_services_scan(chain, now)
    holding = threading.Event()
    outcomes: dict[str, str] = {}

    def pause(step: str) -> None:
        # The first one stops here with the balance locked; the second starts and waits for the lock.
        if step in ("shortfall.closed", "settle.credited"):
            holding.set()
            time.sleep(0.5)

    if first == "ops":
        shortfalls.fault_hook = pause
    else:
        recharges_services.fault_hook = pause

    def closing() -> None:
        if first != "ops":
            holding.wait(timeout=10)
        try:
            close(hold_id=hold.id, operator=ops, remark="decided", now=now)
            outcomes["ops"] = "closed"
        except Conflict:
            outcomes["ops"] = "refused"
        finally:
            connection.close()

    def crediting() -> None:
        if first == "ops":
            holding.wait(timeout=10)
        try:
            outcomes["credit"] = str(
                recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain).credited
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=closing), threading.Thread(target=crediting)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert holding.is_set() is True
    assert outcomes == {"ops": "closed", "credit": "1"}
    hold.refresh_from_db()
    available, frozen, debt = position(owner)
    assert debt == 0
    if first == "ops":  # the whole 2 cleared by ops; the deposit then lands in available
        assert (hold.resolved_amount, available) == (Decimal(2), Decimal(1))
    else:  # the deposit repaid 1 of the 2; ops cleared the other 1
        assert (hold.resolved_amount, available) == (Decimal(1), Decimal(0))
    assert available + frozen - debt == Decimal(-2) + Decimal(1) + hold.resolved_amount
    assert hold.status in (HoldStatus.SETTLED, HoldStatus.WRITTEN_OFF)
    assert recharges_selectors.withdrawals_held(user_id=owner.id) is False
    ledger_is_consistent()


def recharges_services_scan(chain, now) -> None:
    """Scan only (no confirmation): the new deposit is recorded, pending, due at the next confirm."""
    for _ in range(10):
        result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
        if result.caught_up:
            break
    assert RechargeRecord.objects.filter(status=RechargeStatus.PENDING).count() == 1
