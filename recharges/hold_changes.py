"""
Lifting a reorg hold takes four eyes: settling or writing off a shortfall is proposed by one
operator (the admin actions) and applied when a second one, with the same permission, approves
it (controls.proposals). Registered at start by RechargesConfig.ready.
"""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from assets import events as assets_events
from controls import proposals as controls_proposals
from controls.models import SettingsChange
from recharges import selectors as recharges_selectors
from recharges import shortfalls
from recharges.models import AccountHold, HoldStatus
from wallet_project.errors import Conflict, WalletError

SETTLE = "hold_settle"
WRITE_OFF = "hold_write_off"
_CLOSING = {
    SETTLE: (HoldStatus.SETTLED, "recharges.settle_accounthold", "Settle"),
    WRITE_OFF: (HoldStatus.WRITTEN_OFF, "recharges.write_off_accounthold", "Write off"),
}


def account_hold_propose_close(
    *, hold_id: int, kind: str, user: AbstractBaseUser, remark: str, now: datetime | None = None
) -> SettingsChange:
    """
    Propose settling (kind hold_settle) or writing off (hold_write_off) an active hold.

    Nothing changes before a second person approves: the debt stays, the withdrawals stay held.
    :raises WalletError: no remark, or one longer than 255 characters (field remark).
    :raises Conflict: the hold is not active.
    :raises NotPermitted, ProposalPending: as controls.proposals.change_propose_in.
    """
    _status, _permission, verb = _CLOSING[kind]
    text = (remark or "").strip()
    if len(text) > 255:
        raise WalletError("A remark has at most 255 characters.", field="remark")
    moment = now or timezone.now()
    with transaction.atomic(durable=True):
        hold = AccountHold.objects.select_for_update().select_related("recharge").get(id=hold_id)
        if hold.status != HoldStatus.ACTIVE:
            raise Conflict(f"Hold {hold.id} is {hold.get_status_display()}: there is nothing to lift.")
        (debt,) = recharges_selectors.account_hold_debts(holds=[hold]).values()
        owed = assets_events.amount_str(debt)
        return controls_proposals.change_propose_in(
            kind=kind,
            target=f"hold {hold.id}",
            summary=f"{verb} the reorg shortfall of user {hold.user_id}: {owed} {hold.coin_id} owed (hold {hold.id}, "
            f"deposit {hold.recharge.recharge_no if hold.recharge else hold.biz_ref})",
            before={"status": hold.status, "debt": debt},
            after={"status": _status},
            reason=text,
            user=user,
            now=moment,
        )


def _apply(change: SettingsChange, approver: AbstractBaseUser, now: datetime) -> None:
    status, _permission, _verb = _CLOSING[change.kind]
    hold_id = int(change.target.removeprefix("hold "))
    current = AccountHold.objects.filter(id=hold_id).values_list("status", flat=True).get()
    if current != HoldStatus.ACTIVE:
        raise controls_proposals.ProposalStale(f"hold {hold_id} is {HoldStatus(current).label} already")
    remark = f"{change.reason} (proposed by {change.proposed_by.get_username()})"[:255]
    shortfalls.account_hold_close_in(hold_id=hold_id, status=status, operator=approver, remark=remark, now=now)


def register() -> None:
    for kind, (_status, permission, verb) in _CLOSING.items():
        controls_proposals.kind_register(
            controls_proposals.ChangeKind(
                code=kind,
                label=f"{verb.lower()} a reorg shortfall",
                permission=permission,
                apply=_apply,
                family="hold_close",
            )
        )
