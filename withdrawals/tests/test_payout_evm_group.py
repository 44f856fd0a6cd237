"""EVM ether payouts signed in groups (withdrawals/payout/evm_group.py): one transaction and one
insert per table for a group; a withdrawal the group's screen cannot clear decided alone; a group
short of funds falls back to one by one without skipping a nonce; a kill inside a group's
transaction stores and sends nothing of it; two workers racing pay each once. Against ganache and
MariaDB; every key here is a TEST-ONLY throwaway key."""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from assets import selectors as assets_selectors
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from controls import breakers as controls_breakers
from controls.models import AddressBookPolicy, BlacklistAddress
from monitoring.models import Alert
from wallet_project.testing import race
from withdrawals import payout as withdrawals_payout
from withdrawals.models import Payout, PayoutTx, PayoutTxStatus, WithdrawAuditLog, WithdrawRecord, WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, approved, hot  # noqa: F401
from withdrawals.tests.test_payout_evm_run import _approved, _no_fault, _settle, _statuses  # noqa: F401 - _no_fault: autouse
from withdrawals.tests.test_payout_faults import _worker

pytestmark = pytest.mark.django_db(transaction=True)


def _inserts(queries: CaptureQueriesContext, table: str) -> int:
    return sum(1 for q in queries.captured_queries if q["sql"].startswith(f"INSERT INTO `{table}`"))


def test_a_group_is_stored_with_one_insert_per_table_and_each_withdrawal_paid_once(
    hot, evm_node, evm_adapter, settings
):
    settings.WITHDRAW_EVM_SIGN_GROUP = 6
    withdrawals = _approved(6, "0.5", "grouped")
    start = evm_adapter.mined_count(hot.address)

    with CaptureQueriesContext(connection) as queries:
        paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    assert (paid.signed, paid.broadcast, paid.waiting) == (6, 6, 0)
    for table in ("payout", "payout_withdrawal", "payout_tx", "withdraw_audit_log"):
        assert _inserts(queries, table) == 1, table  # the six rows of each in one statement
    assert sorted(Payout.objects.values_list("nonce", flat=True)) == list(range(start, start + 6))
    assert NonceCursor.objects.get(address=hot.address).next_nonce == start + 6
    assert WithdrawAuditLog.objects.filter(action="sign", to_status=WithdrawStatus.PROCESSING).count() == 6
    _settle(evm_node, evm_adapter)
    assert _statuses(withdrawals) == [WithdrawStatus.COMPLETED] * 6
    for record, to in withdrawals:
        assert evm_adapter.balance(to) == int(Decimal("0.497") * ONE_ETH)
        assert (
            PayoutTx.objects.get(payout__links__withdraw=record).tx_hash
            == WithdrawRecord.objects.get(id=record.id).tx_hash
        )
    assert assets_selectors.ledger_mismatches() == []


def test_a_destination_blacklisted_after_its_approval_and_an_address_book_user_are_decided_alone(
    hot, evm_node, evm_adapter, settings
):
    settings.WITHDRAW_EVM_SIGN_GROUP = 5
    withdrawals = _approved(5, "0.5", "screened")
    (blacklisted, to_black), (booked, _) = withdrawals[1], withdrawals[3]
    # Listed after the approval, as the chain's validation writes it (EIP-55).
    BlacklistAddress.objects.create(
        chain_id="ETH", address=to_black, reason="test: stolen funds", create_time=timezone.now()
    )
    AddressBookPolicy.objects.create(user_id=booked.user_id, book_only=True, update_time=timezone.now())

    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    assert (paid.signed, paid.waiting) == (3, 2)
    _settle(evm_node, evm_adapter)
    assert _statuses(withdrawals) == [
        WithdrawStatus.COMPLETED, WithdrawStatus.APPROVED, WithdrawStatus.COMPLETED, WithdrawStatus.APPROVED,
        WithdrawStatus.COMPLETED,
    ]  # fmt: skip
    assert evm_adapter.balance(to_black) == 0
    alerted = set(Alert.objects.filter(kind="ABNORMAL_TRANSACTION").values_list("subject", flat=True))
    assert alerted == {f"withdrawal {blacklisted.withdraw_no}", f"withdrawal {booked.withdraw_no}"}


def test_a_group_the_hot_address_cannot_pay_whole_goes_one_by_one_paying_what_fits_without_a_gap(
    hot, evm_node, evm_adapter, settings
):
    settings.WITHDRAW_EVM_SIGN_GROUP = 5
    withdrawals = _approved(5, "3", "short")  # 15 ETH asked of 10: three fit
    start = evm_adapter.mined_count(hot.address)

    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    assert (paid.signed, paid.waiting) == (3, 2)
    assert sorted(Payout.objects.values_list("nonce", flat=True)) == [start, start + 1, start + 2]
    assert NonceCursor.objects.get(address=hot.address).next_nonce == start + 3
    assert Alert.objects.filter(kind="WITHDRAW_HOT_WALLET_SHORT").count() == 2
    _settle(evm_node, evm_adapter)
    assert _statuses(withdrawals) == [WithdrawStatus.COMPLETED] * 3 + [WithdrawStatus.APPROVED] * 2
    assert evm_adapter.mined_count(hot.address) == start + 3
    assert evm_adapter.balance(hot.address) >= 0


@pytest.mark.mysql
@pytest.mark.parametrize("step", ["sign.locked", "pay.signed"])
def test_a_worker_killed_inside_a_group_or_after_its_commit_then_restarted_pays_each_once(
    step, hot, evm_node, evm_adapter
):
    withdrawals = _approved(4, "0.5", f"group-killed-{step}")
    start = evm_adapter.mined_count(hot.address)

    # sign.locked: the group's rows locked, nothing written yet; pay.signed: the group committed,
    # nothing sent yet.
    killed = _worker(step, evm_node)

    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert evm_adapter.mined_count(hot.address) == start  # nothing reached the node
    if step == "sign.locked":
        assert not Payout.objects.exists() and not PayoutTx.objects.exists()
        assert _statuses(withdrawals) == [WithdrawStatus.APPROVED] * 4
        assert NonceCursor.objects.filter(address=hot.address, next_nonce__gt=start).count() == 0
    else:
        assert PayoutTx.objects.filter(status=PayoutTxStatus.SIGNED).count() == 4
        assert _statuses(withdrawals) == [WithdrawStatus.PROCESSING] * 4
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    _settle(evm_node, evm_adapter)
    assert _statuses(withdrawals) == [WithdrawStatus.COMPLETED] * 4
    assert sorted(Payout.objects.values_list("nonce", flat=True)) == list(range(start, start + 4))
    assert evm_adapter.mined_count(hot.address) == start + 4
    assert assets_selectors.ledger_mismatches() == []


@pytest.mark.mysql
def test_two_workers_paying_the_same_withdrawals_at_once_pay_each_once_gap_free(hot, evm_node, evm_adapter, settings):
    settings.WITHDRAW_EVM_SIGN_GROUP = 4
    withdrawals = _approved(12, "0.25", "raced-group")
    start = evm_adapter.mined_count(hot.address)
    errors = race(lambda: withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter))

    assert errors == []
    assert Payout.objects.count() == 12 and PayoutTx.objects.count() == 12
    assert sorted(Payout.objects.values_list("nonce", flat=True)) == list(range(start, start + 12))
    _settle(evm_node, evm_adapter)
    assert _statuses(withdrawals) == [WithdrawStatus.COMPLETED] * 12
    for _, to in withdrawals:
        assert evm_adapter.balance(to) == int(Decimal("0.247") * ONE_ETH)
    assert evm_adapter.mined_count(hot.address) == start + 12
    assert assets_selectors.ledger_mismatches() == []


def test_a_group_writes_update_time_when_it_writes_never_back_to_the_runs_start(hot, evm_node, evm_adapter, settings):
    settings.WITHDRAW_EVM_SIGN_GROUP = 3
    withdrawals = _approved(3, "0.5", "stamped")
    # The run started before these were approved (a later page of a long run reads them): one by
    # one, auto_now writes the time of the write; the row's update_time never goes back.
    started = timezone.now() - timedelta(minutes=10)
    before = {record.id: WithdrawRecord.objects.get(id=record.id).update_time for record, _ in withdrawals}

    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter, now=started)

    assert paid.signed == 3
    for record, _ in withdrawals:
        row = WithdrawRecord.objects.get(id=record.id)
        assert row.status == WithdrawStatus.PROCESSING
        assert row.update_time >= before[record.id]
        signed = WithdrawAuditLog.objects.get(withdraw=row, action="sign")
        assert row.update_time >= signed.create_time - timedelta(seconds=1)


def test_a_group_cut_short_by_the_runs_batch_leaves_no_older_withdrawal_behind_a_younger_one(
    hot, evm_node, evm_adapter, settings
):
    settings.WITHDRAW_PAY_BATCH = 4  # pages of four; four signed per run
    withdrawals = _approved(9, "0.25", "cut")
    for _, to in [withdrawals[i] for i in (1, 2, 3, 4)]:
        BlacklistAddress.objects.create(chain_id="ETH", address=to, reason="test: waits", create_time=timezone.now())

    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    # Page one signs the first, the next three wait; page two's group has room for three of its
    # four (the fifth waits, the sixth and seventh are signed): the eighth, older than the ninth,
    # is the fourth signed.
    assert paid.signed == 4
    assert _statuses(withdrawals) == [
        WithdrawStatus.PROCESSING, *[WithdrawStatus.APPROVED] * 4, *[WithdrawStatus.PROCESSING] * 3,
        WithdrawStatus.APPROVED,
    ]  # fmt: skip


def test_a_breaker_tripped_while_a_group_is_signed_stops_the_rest_of_it_as_one_by_one_would(
    hot, evm_node, evm_adapter, settings, monkeypatch
):
    settings.WITHDRAW_EVM_SIGN_GROUP = 4
    withdrawals = _approved(4, "0.5", "tripped")
    build = evm_adapter.build_transfer
    built: list[int] = []

    def trip() -> None:
        try:
            controls_breakers.breaker_trip(coin_id="ETH", reason="test: ledger mismatch", source="OPS")
        finally:
            connections.close_all()

    def build_then_trip(**kwargs):
        # Ops trip the breaker (committed at once, on a connection of their own) while the group's
        # second transfer is built: one by one, the third and fourth would find it tripped.
        built.append(1)
        if len(built) == 2:
            tripper = threading.Thread(target=trip)
            tripper.start()
            tripper.join()
        return build(**kwargs)

    monkeypatch.setattr(evm_adapter, "build_transfer", build_then_trip)
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    statuses = _statuses(withdrawals)
    assert statuses[2:] == [WithdrawStatus.APPROVED] * 2
    assert statuses.count(WithdrawStatus.PROCESSING) <= 2
