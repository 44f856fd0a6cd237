"""
The withdrawal row's own steps, shared by the apply/audit services and the payout: lock it, move
it through the state machine with an audit log row, and describe it in a WALLET_WITHDRAW event.

Each joins the caller's transaction; the caller holds the row lock (withdrawal_lock) first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import connection

from assets import events as assets_events
from assets import house as assets_house
from assets import services as assets_services
from assets.models import BusinessType, HouseAccount
from coins.models import CoinConfig
from wallet_project.errors import WalletError
from withdrawals.models import PayoutTx, WithdrawAuditLog, WithdrawRecord, WithdrawStatus


def withdrawal_lock(withdraw_id: int) -> WithdrawRecord:
    """Lock a withdrawal row for the rest of the caller's transaction.

    :raises WalletError: no such withdrawal (code not_found).
    """
    try:
        return WithdrawRecord.objects.select_for_update().get(id=withdraw_id)
    except WithdrawRecord.DoesNotExist:
        raise WalletError(f"No withdrawal {withdraw_id}.", code="not_found") from None


def withdrawals_lock(withdraw_ids: Sequence[int]) -> list[WithdrawRecord]:
    """Lock these withdrawal rows (those that exist) for the rest of the caller's transaction, in id
    order, as one by one in that order would; return them in id order."""
    return list(WithdrawRecord.objects.select_for_update().filter(id__in=list(withdraw_ids)).order_by("id"))


def withdrawal_audited(*, record: WithdrawRecord, auditor_id: int, remark: str, now: datetime) -> None:
    record.audit_user = get_user_model().objects.get(id=auditor_id).get_username()[:32]
    record.audit_time = now
    record.audit_remark = remark[:500] or None


def withdrawal_transition(
    *, record: WithdrawRecord, auditor_id: int | None, action: str, to_status: WithdrawStatus, remark: str
) -> None:
    withdrawal_log(record=record, auditor_id=auditor_id, action=action, to_status=to_status, remark=remark)
    record.status = to_status
    record.save(
        update_fields=[
            "status", "audit_user", "audit_time", "audit_remark", "confirmations", "complete_time", "update_time",
            "from_address", "tx_hash", "block_number",
        ]
    )  # fmt: skip


def withdrawals_transition(
    *, records: Sequence[WithdrawRecord], action: str, to_status: WithdrawStatus, remarks: Sequence[str], now: datetime
) -> None:
    """
    withdrawal_transition by the system (no auditor) for many locked rows at once, each with its
    remark: their audit rows in one insert, the rows written in one statement. Writes what signing
    changes (status, from_address, tx_hash, block_number) and update_time, nothing else.
    """
    WithdrawAuditLog.objects.bulk_create(
        [
            WithdrawAuditLog(
                withdraw=record, auditor_id=None, action=action, from_status=record.status, to_status=to_status,
                remark=remark[:500],
            )
            for record, remark in zip(records, remarks, strict=True)
        ]
    )  # fmt: skip
    for record in records:
        record.status, record.update_time = to_status, now
    # One UPDATE a row by primary key, sent together: Django's bulk_update spent longer building its
    # CASE expressions than the rows took to write (as chains.services.nonces_allocate found).
    stamp = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as sql:
        sql.executemany(
            "UPDATE withdraw_record SET status = %s, from_address = %s, tx_hash = %s, block_number = %s, "
            "update_time = %s WHERE id = %s",
            [(int(r.status), r.from_address, r.tx_hash, r.block_number, stamp, r.id) for r in records],
        )


def withdrawal_log(
    *, record: WithdrawRecord, auditor_id: int | None, action: str, to_status: WithdrawStatus, remark: str
) -> None:
    WithdrawAuditLog.objects.create(
        withdraw=record,
        auditor_id=auditor_id,
        action=action,
        from_status=record.status,
        to_status=to_status,
        remark=remark[:500],
    )


def withdrawal_event(*, record: WithdrawRecord, now: datetime) -> None:
    withdrawal_events(records=[record], now=now)


def withdrawal_events(*, records: Sequence[WithdrawRecord], now: datetime) -> None:
    """Queue a WALLET_WITHDRAW event of each row as it is now (one insert), in the caller's transaction."""
    assets_services.outbox_enqueue_many(
        events_to_send=[
            assets_events.wallet_withdraw(
                withdraw_no=record.withdraw_no,
                user_id=record.user_id,
                coin_id=record.coin_id,
                amount=record.amount,
                fee=record.fee,
                actual_amount=record.actual_amount,
                to_address=record.to_address,
                internal=record.to_user_id is not None,
                tx_hash=record.tx_hash,
                status=int(record.status),
                at=now,
            )
            for record in records
        ]
    )


def withdrawal_fee_book(*, record: WithdrawRecord) -> None:
    """
    Book a completed withdrawal's fee to the house (HOUSE_WITHDRAW_FEE, account WITHDRAW_FEES).

    The user paid `amount` out of their frozen balance, the recipient got `actual_amount`: the fee
    stays on the exchange's addresses and is the house's from now on. Joins the caller's
    transaction (the settlement); an internal transfer carries no fee and books nothing.
    """
    if record.fee <= 0:
        return
    assets_house.house_book(
        coin=record.coin,
        account=HouseAccount.WITHDRAW_FEES,
        amount=record.fee,
        business_type=BusinessType.HOUSE_WITHDRAW_FEE,
        biz_ref=record.withdraw_no,
        ref_tx_hash=record.tx_hash or "",
        memo=f"fee of withdrawal {record.withdraw_no}",
    )


def network_fee_ref(tx: PayoutTx) -> str:
    """The house reference of the network fee a payout's transaction paid: one per mined transaction."""
    return f"payout-tx-{tx.id}"


def payout_network_fee_book(*, tx: PayoutTx, native: CoinConfig, fee: Decimal | None) -> None:
    """
    Book the network fee a mined payout transaction paid (HOUSE_NETWORK_FEE, negative, NETWORK_FEES).

    `fee` is in the chain's own coin (`native`): EVM gas used times effective gas price from the
    receipt, TRON the fee its transaction info reports, BTC the fee stored at signing. A reverted
    transaction paid it too; a dropped replacement paid nothing and is never booked. None or zero
    (a TRON transfer inside its free bandwidth) books nothing. Joins the caller's transaction.
    """
    if fee is None or fee <= 0:
        return
    assets_house.house_book(
        coin=native,
        account=HouseAccount.NETWORK_FEES,
        amount=-fee,
        business_type=BusinessType.HOUSE_NETWORK_FEE,
        biz_ref=network_fee_ref(tx),
        ref_tx_hash=tx.tx_hash,
        memo=f"network fee of payout {tx.payout_id} ({tx.kind.lower()})",
    )
