"""
Every write to balances, flows and the event outbox.

The five postings (credit, debit, freeze, unfreeze, settle_frozen) are building blocks: they join
the caller's transaction (`atomic(savepoint=False)`), lock the (user, coin) balance row first,
and write the balance, one flow row and one ASSET_CHANGE outbox row together. A posting is
idempotent per (business_type, biz_ref): a replay with the same user, coin and amount returns the
first flow and changes nothing; a replay that differs raises FlowConflict.

A balance may carry a debt (assets.debts books it when a reorg takes back more than the balance
holds): it is a negative available balance kept in a non-negative column of its own. So, as a
negative balance would, every posting that adds to the available balance of a user with a debt
repays the debt first: a REORG_DEBT_REPAY flow (referenced by the triggering flow's flow_no)
follows it in the same statements, and only the rest stays available. Hence nothing is ever
available while a debt is open (a CHECK on asset_balance). The debt is read by the same locking
SELECT, so the ordinary posting costs no extra round trip.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from assets import events
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from wallet_project.db import Statement, insert_statement, row_insert, rows_insert, statements_run
from wallet_project.errors import WalletError
from wallet_project.ids import business_no
from wallet_project.money import exact

_ZERO = Decimal(0)


class InsufficientFunds(WalletError):
    code = "insufficient_funds"


class FlowConflict(WalletError):
    code = "flow_conflict"


def balance_lock(*, user_id: int, coin: CoinConfig) -> Balance:
    """
    Lock and return the (user, coin) balance row, creating it on first use.

    Callers that read other rows before posting (a withdrawal checking its daily limit) take
    this lock first, so that every writer of one balance is serialised in the same order.
    """
    with transaction.atomic(savepoint=False):
        try:
            return Balance.objects.select_for_update().get(user_id=user_id, coin=coin)
        except Balance.DoesNotExist:
            pass
        try:
            # A savepoint: losing the insert race to another first posting is expected.
            with transaction.atomic():
                Balance.objects.create(user_id=user_id, coin=coin)
        except IntegrityError:
            pass
        return Balance.objects.select_for_update().get(user_id=user_id, coin=coin)


def outbox_enqueue(*, event: events.Event) -> OutboxMessage:
    """Store an event for the relay, inside the caller's transaction so it commits with the change."""
    row = _outbox_row(event)
    with transaction.atomic(savepoint=False):
        return row_insert(row)


def _checked_ref(biz_ref: str) -> str:
    if not biz_ref or len(biz_ref) > 64:
        raise WalletError("A posting needs a business reference of 1 to 64 characters.", field="biz_ref")
    return biz_ref


def _replay_or_conflict(
    *, booked: Flow, user_id: int, coin: CoinConfig, available_delta: Decimal, frozen_delta: Decimal
) -> Flow:
    same = (booked.user_id, booked.coin_id, booked.amount, booked.frozen_amount) == (
        user_id,
        coin.coin_id,
        available_delta,
        frozen_delta,
    )
    if not same:
        raise FlowConflict(f"{BusinessType(booked.business_type).name} {booked.biz_ref} is already booked differently.")
    return booked


def _book(
    *,
    balance: Balance,
    business_type: BusinessType,
    biz_ref: str,
    available_delta: Decimal,
    frozen_delta: Decimal,
    ref_tx_hash: str,
    memo: str,
    now: datetime,
    debt_delta: Decimal = _ZERO,
) -> tuple[Flow, OutboxMessage]:
    """Apply one posting to a locked balance in memory; return its unsaved flow and event."""
    with exact():
        available_after = balance.available + available_delta
        frozen_after = balance.frozen + frozen_delta
        debt_after = balance.debt + debt_delta
    if available_after < 0:
        raise InsufficientFunds("The available balance is too low.", field="amount")
    if frozen_after < 0:
        raise InsufficientFunds("The frozen balance is too low.", field="amount")
    if debt_after < 0:
        raise InsufficientFunds("The debt is smaller than that.", field="amount")
    flow = Flow(
        flow_no=business_no(prefix="F", now=now),
        user_id=balance.user_id,
        coin_id=balance.coin_id,
        business_type=business_type,
        biz_ref=biz_ref,
        amount=available_delta,
        balance_before=balance.available,
        balance_after=available_after,
        frozen_amount=frozen_delta,
        frozen_before=balance.frozen,
        frozen_after=frozen_after,
        debt_amount=debt_delta,
        debt_before=balance.debt,
        debt_after=debt_after,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
        create_time=now,
    )
    event = events.asset_changed(
        flow_no=flow.flow_no,
        user_id=balance.user_id,
        coin_id=balance.coin_id,
        business_type=int(business_type),
        amount=available_delta,
        balance_before=flow.balance_before,
        balance_after=available_after,
        frozen_amount=frozen_delta,
        frozen_before=flow.frozen_before,
        frozen_after=frozen_after,
        biz_ref=biz_ref,
        ref_tx_hash=ref_tx_hash,
        at=now,
        debt_amount=debt_delta,
        debt_before=flow.debt_before,
        debt_after=debt_after,
    )
    balance.available = available_after
    balance.frozen = frozen_after
    balance.debt = debt_after
    balance.update_time = now
    return flow, _outbox_row(event)


def _repay(*, balance: Balance, trigger: Flow, now: datetime) -> tuple[Flow, OutboxMessage] | None:
    """
    Book the repayment of the balance's debt from what `trigger` made available, if both are there.

    Referenced by the trigger's flow_no (unique), so it is booked exactly when its trigger is:
    a replay of the trigger returns the first flow before reaching this.
    """
    if trigger.amount <= 0 or balance.debt <= 0 or balance.available <= 0:
        return None
    repaid = min(balance.available, balance.debt)
    with exact():
        taken = -repaid
    return _book(
        balance=balance,
        business_type=BusinessType.REORG_DEBT_REPAY,
        biz_ref=trigger.flow_no,
        available_delta=taken,
        frozen_delta=_ZERO,
        debt_delta=taken,
        ref_tx_hash=trigger.ref_tx_hash,
        memo=f"reorg debt repaid from {BusinessType(trigger.business_type).name} {trigger.biz_ref}"[:255],
        now=now,
    )


def outbox_enqueue_many(*, events_to_send: Sequence[events.Event]) -> list[OutboxMessage]:
    """Store several events for the relay in one statement, inside the caller's transaction."""
    rows = [_outbox_row(event) for event in events_to_send]
    with transaction.atomic(savepoint=False):
        for start in range(0, len(rows), 500):
            rows_insert(rows[start : start + 500])
    return rows


def _outbox_row(event: events.Event) -> OutboxMessage:
    return OutboxMessage(
        message_id=event.header.message_id,
        topic=event.header.topic,
        tags=event.header.tags,
        keys=event.header.keys,
        partition_key=event.partition_key,
        payload=event.as_dict(),
    )


def _post(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    available_sign: int,
    frozen_sign: int,
    ref_tx_hash: str,
    memo: str,
) -> Flow:
    checked = coins_selectors.amount_check(coin=coin, amount=amount)
    _checked_ref(biz_ref)
    with exact():
        available_delta = checked * available_sign
        frozen_delta = checked * frozen_sign

    with transaction.atomic(savepoint=False):
        locked = _balance_lock_with_replay(user_id=user_id, coin=coin, business_type=business_type, biz_ref=biz_ref)
        if locked is None:
            balance_lock(user_id=user_id, coin=coin)  # first posting: create the row, locked
            locked = _balance_lock_with_replay(user_id=user_id, coin=coin, business_type=business_type, biz_ref=biz_ref)
        balance, booked_id = locked
        if booked_id is not None:
            return _replay_or_conflict(
                booked=Flow.objects.get(id=booked_id),
                user_id=user_id,
                coin=coin,
                available_delta=available_delta,
                frozen_delta=frozen_delta,
            )
        now = timezone.now()
        flow, event = _book(
            balance=balance,
            business_type=business_type,
            biz_ref=biz_ref,
            available_delta=available_delta,
            frozen_delta=frozen_delta,
            ref_tx_hash=ref_tx_hash,
            memo=memo,
            now=now,
        )
        flows, events_out = [flow], [event]
        repaid = _repay(balance=balance, trigger=flow, now=now)
        if repaid is not None:
            flows.append(repaid[0])
            events_out.append(repaid[1])
        # Prepared statements instead of the ORM's compiler, sent in one round trip: this path
        # runs once per deposit, withdrawal step and adjustment, and the compiler and three
        # round trips cost more than the database's work.
        try:
            balance_update = _balances_write_statements(balances=[balance], with_debt=repaid is not None)
            statements_run([insert_statement(flows), *balance_update, insert_statement(events_out)])
        except IntegrityError as error:
            # Another user's posting of the same reference committed while we held our lock.
            if "uk_asset_flow_business_ref" in str(error) or "biz_ref" in str(error):
                raise FlowConflict(
                    f"{BusinessType(business_type).name} {biz_ref} is already booked differently."
                ) from None
            raise
        return flow


_AVAILABLE = Balance._meta.get_field("available")
_FROZEN = Balance._meta.get_field("frozen")
_DEBT = Balance._meta.get_field("debt")
_UPDATE_TIME = Balance._meta.get_field("update_time")


def _balance_lock_with_replay(
    *, user_id: int, coin: CoinConfig, business_type: BusinessType, biz_ref: str
) -> tuple[Balance, int | None] | None:
    """
    Lock the balance row and find an earlier posting of (business_type, biz_ref), in one statement.

    Returns None when the balance row does not exist yet. The flow row, if any, is locked too,
    which is harmless: it is a replay and is only read.
    """
    sql = (
        f"SELECT b.id, b.available, b.frozen, b.debt, f.id FROM {Balance._meta.db_table} b "  # noqa: S608
        f"LEFT JOIN {Flow._meta.db_table} f ON f.business_type = %s AND f.biz_ref = %s "
        "WHERE b.user_id = %s AND b.coin_id = %s"
    )
    if connection.features.has_select_for_update:
        sql += " FOR UPDATE"
    with connection.cursor() as cursor:
        cursor.execute(sql, [int(business_type), biz_ref, user_id, coin.coin_id])
        row = cursor.fetchone()
    if row is None:
        return None
    balance_id, available, frozen, debt, booked_id = row
    balance = Balance(
        id=balance_id,
        user_id=user_id,
        coin_id=coin.coin_id,
        available=_AVAILABLE.to_python(_from_db(available)),
        frozen=_FROZEN.to_python(_from_db(frozen)),
        debt=_DEBT.to_python(_from_db(debt)),
    )
    balance._state.adding = False
    return balance, booked_id


def _from_db(value: object) -> object:
    # SQLite hands back decimals as floats: convert them exactly as Django's own SQLite
    # converter does (15 significant digits), so this path and the ORM read the same value.
    if isinstance(value, float):
        return _SQLITE_FLOAT.create_decimal_from_float(value).quantize(Decimal(1).scaleb(-18), context=_WIDE)
    return value


_SQLITE_FLOAT = decimal.Context(prec=15)
_WIDE = decimal.Context(prec=60)


def balance_credit(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Add amount to the available balance, once per (business_type, biz_ref).

    :raises InvalidAmount: amount is not positive, not a number or finer than the coin allows.
    :raises FlowConflict: biz_ref was already booked for another user, coin or amount.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=1,
        frozen_sign=0,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_debit(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Take amount from the available balance, once per (business_type, biz_ref).

    :raises InsufficientFunds: the available balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=-1,
        frozen_sign=0,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_freeze(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Move amount from available to frozen, once per (business_type, biz_ref).

    :raises InsufficientFunds: the available balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=-1,
        frozen_sign=1,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_unfreeze(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Move amount from frozen back to available, once per (business_type, biz_ref).

    :raises InsufficientFunds: the frozen balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=1,
        frozen_sign=-1,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


def balance_settle_frozen(
    *,
    user_id: int,
    coin: CoinConfig,
    amount: object,
    business_type: BusinessType,
    biz_ref: str,
    ref_tx_hash: str = "",
    memo: str = "",
) -> Flow:
    """
    Remove amount from the frozen balance for good (a withdrawal paid out), once per reference.

    :raises InsufficientFunds: the frozen balance is smaller than amount.
    :raises InvalidAmount, FlowConflict: as balance_credit.
    """
    return _post(
        user_id=user_id,
        coin=coin,
        amount=amount,
        business_type=business_type,
        biz_ref=biz_ref,
        available_sign=0,
        frozen_sign=-1,
        ref_tx_hash=ref_tx_hash,
        memo=memo,
    )


@dataclass(frozen=True)
class Credit:
    """One line of balance_credit_batch."""

    user_id: int
    amount: Decimal
    biz_ref: str
    ref_tx_hash: str = ""
    memo: str = ""


class CreditBatch(list[Flow]):
    """The credit flows of balance_credit_batch, one per line in line order, and whose debt they repaid."""

    def __init__(self) -> None:
        super().__init__()
        self.debt_repaid_user_ids: set[int] = set()  # a REORG_DEBT_REPAY flow was booked for them
        self.debt_cleared_user_ids: set[int] = set()  # ... and their debt is now zero


def balance_credit_batch(*, coin: CoinConfig, business_type: BusinessType, credits: Sequence[Credit]) -> CreditBatch:
    """
    Credit many (user, amount, reference) lines of one coin in a few statements.

    The result is what calling balance_credit for each line in order would give — same flows,
    same replay rules, the same repayment of a debt — but the balances (their debts included)
    are locked with one query (in id order, as every writer locks them), replays found with one
    query, and flows, events and balances written in bulk: a user with a debt adds flows to the
    same statements, not a round trip. Joins the caller's transaction.
    :raises InvalidAmount, FlowConflict: as balance_credit, for the first offending line.
    """
    lines = [(c, coins_selectors.amount_check(coin=coin, amount=c.amount), _checked_ref(c.biz_ref)) for c in credits]
    result = CreditBatch()
    if not lines:
        return result
    with transaction.atomic(savepoint=False):
        user_ids = sorted({c.user_id for c, _, _ in lines})
        balances = _balances_lock(user_ids=user_ids, coin=coin)
        booked: dict[str, Flow] = {}
        refs = [ref for _, _, ref in lines]
        for start in range(0, len(refs), 1000):
            for flow in Flow.objects.filter(business_type=business_type, biz_ref__in=refs[start : start + 1000]):
                booked[flow.biz_ref] = flow
        now = timezone.now()
        new_flows: list[Flow] = []
        new_events: list[OutboxMessage] = []
        changed: dict[int, Balance] = {}
        for credit, amount, ref in lines:
            if ref in booked:
                result.append(
                    _replay_or_conflict(
                        booked=booked[ref],
                        user_id=credit.user_id,
                        coin=coin,
                        available_delta=amount,
                        frozen_delta=Decimal(0),
                    )
                )
                continue
            balance = balances[credit.user_id]
            flow, event = _book(
                balance=balance,
                business_type=business_type,
                biz_ref=ref,
                available_delta=amount,
                frozen_delta=Decimal(0),
                ref_tx_hash=credit.ref_tx_hash,
                memo=credit.memo,
                now=now,
            )
            booked[ref] = flow
            changed[balance.id] = balance
            new_flows.append(flow)
            new_events.append(event)
            result.append(flow)
            repaid = _repay(balance=balance, trigger=flow, now=now)
            if repaid is not None:
                new_flows.append(repaid[0])
                new_events.append(repaid[1])
                result.debt_repaid_user_ids.add(balance.user_id)
        result.debt_cleared_user_ids = {u for u in result.debt_repaid_user_ids if balances[u].debt == 0}
        statements = []
        for start in range(0, len(new_flows), 500):
            statements.append(insert_statement(new_flows[start : start + 500]))
            statements.append(insert_statement(new_events[start : start + 500]))
        statements += _balances_write_statements(
            balances=list(changed.values()), with_debt=bool(result.debt_repaid_user_ids)
        )
        for start in range(0, len(statements), 3):  # three 500-row statements: ~600 KB a query
            statements_run(statements[start : start + 3])
        return result


def _balances_write_statements(*, balances: list[Balance], with_debt: bool = False) -> list[Statement]:
    """
    The UPDATEs writing available, frozen and update_time of locked rows, 500 per UPDATE ... CASE.

    with_debt: the debt column changed too, for some of them: write it as well.
    """
    # QuerySet.bulk_update builds the same statement through the expression API at several
    # milliseconds per row; plain parameters keep a 500-line batch, and a single posting, cheap.
    if len(balances) == 1:  # a single posting: the plain statement, cheaper to build and to run
        (balance,) = balances
        debt_set = "debt = %s, " if with_debt else ""
        sql = (
            f"UPDATE {Balance._meta.db_table} SET available = %s, frozen = %s, "  # noqa: S608 - no user input
            f"{debt_set}update_time = %s WHERE id = %s"
        )
        params = [
            _AVAILABLE.get_db_prep_save(balance.available, connection),
            _FROZEN.get_db_prep_save(balance.frozen, connection),
            *([_DEBT.get_db_prep_save(balance.debt, connection)] if with_debt else []),
            _UPDATE_TIME.get_db_prep_save(balance.update_time, connection),
            balance.id,
        ]
        return [Statement(sql=sql, params=params)]
    statements = []
    for start in range(0, len(balances), 500):
        chunk = balances[start : start + 500]
        cases = " ".join("WHEN %s THEN %s" for _ in chunk)
        marks = ", ".join("%s" for _ in chunk)
        params: list[object] = []
        for balance in chunk:
            params += [balance.id, _AVAILABLE.get_db_prep_save(balance.available, connection)]
        for balance in chunk:
            params += [balance.id, _FROZEN.get_db_prep_save(balance.frozen, connection)]
        debt_set = ""
        if with_debt:
            debt_set = f"debt = CASE id {cases} END, "
            for balance in chunk:
                params += [balance.id, _DEBT.get_db_prep_save(balance.debt, connection)]
        params.append(_UPDATE_TIME.get_db_prep_save(chunk[0].update_time, connection))
        params += [balance.id for balance in chunk]
        sql = (
            f"UPDATE {Balance._meta.db_table} SET available = CASE id {cases} END, "  # noqa: S608 - no user input
            f"frozen = CASE id {cases} END, {debt_set}update_time = %s WHERE id IN ({marks})"
        )
        statements.append(Statement(sql=sql, params=params))
    return statements


def _balances_lock(*, user_ids: list[int], coin: CoinConfig) -> dict[int, Balance]:
    """Lock the balances of these users in primary-key order, creating the missing ones first."""
    existing = dict(Balance.objects.filter(coin=coin, user_id__in=user_ids).values_list("user_id", "id"))
    missing = [user_id for user_id in user_ids if user_id not in existing]
    if missing:
        for user_id in missing:
            # One by one, as balance_lock does: a lost race is an IntegrityError on the unique
            # key in a savepoint, and anything else (an unknown user) still raises.
            existing[user_id] = balance_lock(user_id=user_id, coin=coin).id
    # Locking by primary key in id order: the order every writer of several balances uses.
    locked = Balance.objects.select_for_update().filter(id__in=sorted(existing.values())).order_by("id")
    return {balance.user_id: balance for balance in locked}
