"""
Treasury transfers to cold: planned from the hot balances, decided by ops, every step logged.

The planner (treasury_plan) compares each hot address's balance of a coin, as last read from the
chain, with its max_balance; the surplus becomes a transfer to the chain's cold address, PROPOSED
for an operator (one TREASURY_TRANSFER_PROPOSED alert each), or APPROVED at once for the coins of
TREASURY_AUTO_SEND_COINS. Signing, sending and confirming are in treasury.sending.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from addresses import selectors as addresses_selectors
from coins.models import CoinConfig
from monitoring import services as monitoring_services
from treasury import selectors as treasury_selectors
from treasury.models import TransferStatus, TreasuryTransfer, TreasuryTransferLog
from wallet_project.errors import Conflict, NotFound, WalletError
from wallet_project.ids import business_no
from wallet_project.money import exact
from withdrawals import selectors as withdrawals_selectors

logger = logging.getLogger(__name__)

APPROVE_PERMISSION = "treasury.approve_treasurytransfer"
PROPOSED_ALERT = "TREASURY_TRANSFER_PROPOSED"


class TransferConflict(Conflict):
    code = "treasury_transfer_conflict"


@dataclass(frozen=True)
class PlanResult:
    chain_id: str
    proposed: int = 0
    approved: int = 0  # approved at once (TREASURY_AUTO_SEND_COINS)
    skipped: int = 0  # above the maximum but a transfer is open already, or the balance is older than the last one


def transfer_log(
    *,
    transfer: TreasuryTransfer,
    action: str,
    from_status: str,
    operator: AbstractBaseUser | None = None,
    remark: str = "",
    now: datetime,
) -> None:
    TreasuryTransferLog.objects.create(
        transfer=transfer,
        action=action,
        from_status=from_status,
        to_status=transfer.status,
        operator_id=operator.pk if operator is not None else None,
        remark=remark[:500],
        create_time=now,
    )


def _open_key(*, coin_id: str, from_address: str) -> str:
    return f"{coin_id}|{from_address}"


def treasury_plan(*, chain_id: str, now: datetime | None = None) -> PlanResult:
    """
    Propose (or, for TREASURY_AUTO_SEND_COINS, approve) a transfer of each hot surplus above max_balance to cold.

    One open transfer per hot address and coin; a balance read before the last transfer to cold
    settled is not trusted (it still shows the surplus that transfer moved); after ops rejected one,
    none is proposed for TREASURY_REPROPOSE_SECONDS.
    """
    moment = now or timezone.now()
    proposed = approved = skipped = 0
    no_cold = False
    for position in treasury_selectors.hot_positions(chain_id=chain_id, now=moment):
        balance, maximum = position.balance, position.max_balance
        if balance is None or maximum is None or balance <= maximum:
            continue
        hot = position.address
        last = treasury_selectors.transfer_last_finished_at(coin_id=position.coin_id, from_address=hot.address)
        rejected = treasury_selectors.transfer_last_finished_at(
            coin_id=position.coin_id, from_address=hot.address, status=TransferStatus.REJECTED
        )
        if (
            treasury_selectors.transfer_open(coin_id=position.coin_id, from_address=hot.address) is not None
            or (last is not None and (position.read_at is None or position.read_at <= last))
            or (rejected is not None and (moment - rejected).total_seconds() < settings.TREASURY_REPROPOSE_SECONDS)
        ):
            skipped += 1
            continue
        cold = addresses_selectors.cold_address_for(chain_id=chain_id, wallet_type=hot.wallet_type)
        if cold is None:
            no_cold = True
            monitoring_services.alert_raise_alone(
                kind="TREASURY_NO_COLD_ADDRESS",
                subject=f"chain {chain_id}",
                message=f"{position.subject} holds {balance.normalize():f}, above its maximum "
                f"{maximum.normalize():f}, and chain {chain_id} has no enabled cold address to move the surplus to",
            )
            continue
        with exact():
            # Approved withdrawals waiting for their payout are paid from the hot addresses: kept.
            surplus = balance - maximum - withdrawals_selectors.approved_unpaid_total(coin_id=position.coin_id)
        if surplus <= 0:
            skipped += 1
            continue
        transfer = _transfer_create(
            coin_id=position.coin_id,
            hot_address=hot.address,
            cold_address=cold.address,
            amount=surplus,
            balance=balance,
            maximum=maximum,
            now=moment,
        )
        if transfer is None:
            skipped += 1
        elif transfer.status == TransferStatus.APPROVED:
            approved += 1
        else:
            proposed += 1
    if not no_cold:
        monitoring_services.alert_resolve_alone(
            kind="TREASURY_NO_COLD_ADDRESS", subject=f"chain {chain_id}", how="a cold address exists", now=moment
        )
    return PlanResult(chain_id=chain_id, proposed=proposed, approved=approved, skipped=skipped)


@transaction.atomic(durable=True)
def _transfer_create(
    *,
    coin_id: str,
    hot_address: str,
    cold_address: str,
    amount: Decimal,
    balance: Decimal,
    maximum: Decimal,
    now: datetime,
) -> TreasuryTransfer | None:
    coin = CoinConfig.objects.get(coin_id=coin_id)
    auto = coin_id in settings.TREASURY_AUTO_SEND_COINS
    try:
        with transaction.atomic():  # a savepoint: a concurrent planner may have opened it first
            transfer = TreasuryTransfer.objects.create(
                transfer_no=business_no(prefix="T", now=now),
                chain_id=coin.chain_id,
                coin=coin,
                from_address=hot_address,
                to_address=cold_address,
                amount=amount,
                status=TransferStatus.APPROVED if auto else TransferStatus.PROPOSED,
                open_key=_open_key(coin_id=coin_id, from_address=hot_address),
                seen_balance=balance,
                seen_max_balance=maximum,
                create_time=now,
            )
    except IntegrityError:
        return None
    text = (
        f"{amount.normalize():f} {coin_id} from hot {hot_address} (holds {balance.normalize():f}, maximum "
        f"{maximum.normalize():f}) to cold {cold_address}"
    )
    if auto:
        transfer_log(
            transfer=transfer, action="plan_auto", from_status="", remark=f"{text} (TREASURY_AUTO_SEND_COINS)", now=now
        )
    else:
        transfer_log(transfer=transfer, action="plan", from_status="", remark=text, now=now)
        monitoring_services.alert_raise(
            kind=PROPOSED_ALERT, subject=f"transfer {transfer.transfer_no}", message=f"proposed: {text}", now=now
        )
    logger.info("treasury transfer %s planned: %s", transfer.transfer_no, text)
    return transfer


def _decide(
    *, transfer_id: int, user: AbstractBaseUser, remark: str, to_status: TransferStatus, action: str, now: datetime
) -> TreasuryTransfer:
    text = (remark or "").strip()
    if not text:
        raise WalletError(
            "Say why: a decision on a treasury transfer needs a remark.", field="remark", code="remark_required"
        )
    if not user.has_perm(APPROVE_PERMISSION):
        raise WalletError(
            f"Deciding a treasury transfer needs the permission {APPROVE_PERMISSION}.", code="permission_denied"
        )
    transfer = TreasuryTransfer.objects.select_for_update().filter(id=transfer_id).first()
    if transfer is None:
        raise NotFound(f"No treasury transfer {transfer_id}.")
    if transfer.status != TransferStatus.PROPOSED:
        raise TransferConflict(
            f"Transfer {transfer.transfer_no} is {transfer.get_status_display()}: nothing to decide."
        )
    source = transfer.status
    transfer.status = to_status
    transfer.decided_by_id, transfer.decided_at = user.pk, now
    fields = ["status", "decided_by", "decided_at", "update_time"]
    if to_status == TransferStatus.REJECTED:
        transfer.open_key, transfer.finished_at, transfer.reason = None, now, text[:500]
        fields += ["open_key", "finished_at", "reason"]
    transfer.save(update_fields=fields)
    transfer_log(transfer=transfer, action=action, from_status=source, operator=user, remark=text, now=now)
    monitoring_services.alert_resolve(
        kind=PROPOSED_ALERT,
        subject=f"transfer {transfer.transfer_no}",
        how=f"{to_status.label} by {user.get_username()}",
        now=now,
    )
    logger.info("treasury transfer %s %s by %s", transfer.transfer_no, to_status.label, user.get_username())
    return transfer


@transaction.atomic(durable=True)
def treasury_transfer_approve(
    *, transfer_id: int, user: AbstractBaseUser, remark: str, now: datetime | None = None
) -> TreasuryTransfer:
    """
    Approve a proposed transfer to cold in the name of user: the next send run signs and sends it.

    :raises WalletError: no remark, or user lacks treasury.approve_treasurytransfer.
    :raises NotFound: no such transfer.
    :raises TransferConflict: it is not PROPOSED (decided already).
    """
    return _decide(
        transfer_id=transfer_id,
        user=user,
        remark=remark,
        to_status=TransferStatus.APPROVED,
        action="approve",
        now=now or timezone.now(),
    )


@transaction.atomic(durable=True)
def treasury_transfer_reject(
    *, transfer_id: int, user: AbstractBaseUser, remark: str, now: datetime | None = None
) -> TreasuryTransfer:
    """
    Reject a proposed transfer: nothing is sent; the planner may propose the surplus again later.

    :raises WalletError, NotFound, TransferConflict: as treasury_transfer_approve.
    """
    return _decide(
        transfer_id=transfer_id,
        user=user,
        remark=remark,
        to_status=TransferStatus.REJECTED,
        action="reject",
        now=now or timezone.now(),
    )
