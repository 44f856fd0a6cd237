"""The database layer under the ledger: statements sent together, and transactions opened by BEGIN."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.transaction import TransactionManagementError

from assets import events
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig
from wallet_project.db import Statement, insert_statement, rows_insert, rows_insert_ignoring_conflicts, statements_run


def outbox_row(message_id: str) -> OutboxMessage:
    return OutboxMessage(
        message_id=message_id, topic="t", tags="x", keys="k", partition_key="1", payload={"n": message_id}
    )


@pytest.mark.django_db
class TestStatementsRun:
    def test_runs_in_order_sets_the_new_keys_and_returns_each_statements_rows(self):
        first, second = outbox_row("m1"), outbox_row("m2")

        results = statements_run(
            [
                insert_statement([first]),
                Statement(sql="UPDATE event_outbox SET tags = %s WHERE message_id = %s", params=["y", "m1"]),
                insert_statement([second]),
                Statement(sql="SELECT message_id, tags FROM event_outbox ORDER BY id"),
            ]
        )

        assert first.pk and second.pk and second.pk > first.pk
        assert not first._state.adding
        assert results[1] == []
        assert results[3] == [("m1", "y"), ("m2", "x")]

    def test_a_failing_later_statement_raises_and_its_transaction_keeps_nothing(self):
        statements_run([insert_statement([outbox_row("taken")])])

        with pytest.raises(IntegrityError), transaction.atomic():
            statements_run([insert_statement([outbox_row("new")]), insert_statement([outbox_row("taken")])])

        assert list(OutboxMessage.objects.values_list("message_id", flat=True)) == ["taken"]
        # The connection is usable again: no result set of the failed batch is left unread.
        assert statements_run([Statement(sql="SELECT COUNT(*) FROM event_outbox")]) == [[(1,)]]

    def test_a_violated_check_is_an_integrity_error_wherever_the_statement_stands(self, user):
        btc = CoinConfig.objects.get(coin_id="BTC")
        assets_services.balance_credit(
            user_id=user.id, coin=btc, amount=Decimal("1"), business_type=BusinessType.RECHARGE, biz_ref="r"
        )
        overdraw = Statement(sql="UPDATE asset_balance SET available = -1 WHERE user_id = %s", params=[user.id])

        for statements in ([overdraw], [Statement(sql="SELECT 1"), overdraw]):
            with pytest.raises(IntegrityError), transaction.atomic():
                statements_run(statements)

        assert Balance.objects.get(user=user).available == Decimal("1")

    def test_rows_insert_can_skip_rows_that_break_a_unique_key(self):
        rows_insert([outbox_row("taken")])

        inserted = rows_insert_ignoring_conflicts([outbox_row("new-1"), outbox_row("taken"), outbox_row("new-2")])

        assert inserted == 2
        assert sorted(OutboxMessage.objects.values_list("message_id", flat=True)) == ["new-1", "new-2", "taken"]

    def test_refuses_a_statement_that_holds_two(self):
        with pytest.raises(ValueError, match="exactly one"):
            Statement(sql="UPDATE event_outbox SET tags = 'x'; SELECT 1")


@pytest.mark.django_db
def test_a_posting_whose_event_cannot_be_stored_writes_nothing(user, monkeypatch):
    """The flow INSERT, balance UPDATE and event INSERT travel together: all of them or none."""
    btc = CoinConfig.objects.get(coin_id="BTC")
    assets_services.balance_credit(
        user_id=user.id, coin=btc, amount=Decimal("1"), business_type=BusinessType.RECHARGE, biz_ref="first"
    )
    taken = OutboxMessage.objects.get().message_id
    monkeypatch.setattr(events, "new_message_id", lambda: taken)

    with pytest.raises(IntegrityError), transaction.atomic():
        assets_services.balance_credit(
            user_id=user.id, coin=btc, amount=Decimal("2"), business_type=BusinessType.RECHARGE, biz_ref="second"
        )

    assert Balance.objects.get(user=user, coin=btc).available == Decimal("1")
    assert list(Flow.objects.values_list("biz_ref", flat=True)) == ["first"]
    assert OutboxMessage.objects.count() == 1


def session_state() -> tuple[int, int]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@in_transaction, @@autocommit")
        return cursor.fetchone()


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
class TestTransactionsOpenedByBegin:
    def test_an_atomic_block_is_one_transaction_and_leaves_autocommit_on(self):
        assert session_state() == (0, 1)
        with transaction.atomic():
            assert session_state() == (1, 1)  # BEGIN, not SET autocommit=0
            statements_run([insert_statement([outbox_row("a")])])
        assert session_state() == (0, 1)
        assert OutboxMessage.objects.count() == 1

    def test_a_failed_block_rolls_back_and_a_savepoint_rolls_back_alone(self):
        with pytest.raises(RuntimeError), transaction.atomic():
            statements_run([insert_statement([outbox_row("lost")])])
            raise RuntimeError
        with transaction.atomic():
            statements_run([insert_statement([outbox_row("kept")])])
            with pytest.raises(RuntimeError), transaction.atomic():
                statements_run([insert_statement([outbox_row("inner")])])
                raise RuntimeError

        assert list(OutboxMessage.objects.values_list("message_id", flat=True)) == ["kept"]
        assert session_state() == (0, 1)

    def test_manual_transaction_management_still_switches_autocommit_off(self):
        transaction.set_autocommit(False)
        try:
            statements_run([insert_statement([outbox_row("manual")])])
            assert session_state() == (1, 0)
            transaction.rollback()
        finally:
            transaction.set_autocommit(True)

        assert session_state() == (0, 1)
        assert OutboxMessage.objects.count() == 0

    def test_a_deadlock_victims_block_runs_nothing_more(self):
        # InnoDB rolls the victim's whole transaction back, which also ends a BEGIN transaction:
        # a statement the block ran afterwards would commit on its own. The block is marked for
        # rollback instead, so the next query raises.
        first, second = outbox_row("first"), outbox_row("second")
        statements_run([insert_statement([first]), insert_statement([second])])
        ready = threading.Barrier(2)
        outcomes: dict[str, BaseException | None] = {}

        def lock_both(name: str, order: list[OutboxMessage]) -> None:
            try:
                with transaction.atomic():
                    OutboxMessage.objects.select_for_update().get(pk=order[0].pk)
                    ready.wait(timeout=10)
                    try:
                        OutboxMessage.objects.select_for_update().get(pk=order[1].pk)
                        outcomes[name] = None
                    except OperationalError as error:  # the victim, caught inside its block
                        outcomes[name] = error
                        OutboxMessage.objects.filter(pk=order[0].pk).update(tags="after the deadlock")
            except TransactionManagementError as error:
                outcomes[name + " afterwards"] = error
            finally:
                connection.close()

        threads = [
            threading.Thread(target=lock_both, args=("a", [first, second])),
            threading.Thread(target=lock_both, args=("b", [second, first])),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        victims = [name for name in ("a", "b") if isinstance(outcomes.get(name), OperationalError)]
        assert len(victims) == 1 and outcomes[victims[0]].args[0] == 1213
        assert isinstance(outcomes.get(victims[0] + " afterwards"), TransactionManagementError)
        assert set(OutboxMessage.objects.values_list("tags", flat=True)) == {"x"}
