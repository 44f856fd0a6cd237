"""
Four eyes on risky settings: a change proposed by one staff member takes effect only when another
one, holding the change's permission, approves it.

A proposal (settings_change) stores what it changes (kind, target), the values before and after,
and why. Each kind of change is registered once (`kind_register`) with the permission it needs and
the function that applies it; that function joins the approval's transaction, locks its target row
and first checks that the target still holds the values the proposal was made against — if not,
it raises ProposalStale and the proposal ends STALE with nothing applied (the approver approved
exactly the before → after they saw, never something that moved since). Nothing changes before the
approval; the proposer can neither approve their own change nor have it approved by someone
without the permission.

Kinds live beside what they change: coin settings, breaker clears and the blacklist here
(controls.changes), reorg holds in recharges (a higher app, which registers its kinds at start).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status as http

from controls.models import ChangeStatus, SettingsChange
from wallet_project.errors import Conflict, WalletError

logger = logging.getLogger(__name__)

DECIDE_PERMISSION = "controls.decide_settingschange"


class NotPermitted(WalletError):
    code = "permission_denied"
    http_status = http.HTTP_403_FORBIDDEN


class ProposalStale(Conflict):
    """Raised by a kind's apply: the target no longer holds the proposal's before values."""

    code = "proposal_stale"


class ProposalPending(Conflict):
    code = "proposal_pending"


Apply = Callable[[SettingsChange, AbstractBaseUser, datetime], None]


@dataclass(frozen=True)
class ChangeKind:
    code: str
    label: str
    # Needed both to propose and to approve (besides DECIDE_PERMISSION to approve).
    permission: str
    # Applies an approved proposal in the approval's transaction; raises ProposalStale before
    # writing anything when the target moved since the proposal.
    apply: Apply
    # Kinds of one family share their pending slot: one proposal at a time per target (a hold
    # is not proposed for settling and for writing off at once). Default: the kind's code.
    family: str = ""


_KINDS: dict[str, ChangeKind] = {}


def kind_register(kind: ChangeKind) -> None:
    """Make a kind of change known (at app start); registering the same code again replaces it."""
    _KINDS[kind.code] = kind


def kind_get(code: str) -> ChangeKind:
    """
    Return the registered kind.

    :raises WalletError: no such kind (code unknown_change_kind).
    """
    kind = _KINDS.get(code)
    if kind is None:
        raise WalletError(f"No change of kind {code!r} is known.", code="unknown_change_kind")
    return kind


def jsonable(value: object) -> object:
    """A setting's value as the proposal stores it: Decimals and dates as exact strings."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    return str(value)


def _open_key(kind: ChangeKind, target: str) -> str:
    return f"{kind.family or kind.code}|{target}"[:200]


@transaction.atomic(savepoint=False)
def change_propose_in(
    *,
    kind: str,
    target: str,
    summary: str,
    before: Mapping[str, object],
    after: Mapping[str, object],
    reason: str,
    user: AbstractBaseUser,
    now: datetime,
) -> SettingsChange:
    """
    Record a proposed change, in the caller's transaction (which locked the target row, if any).

    :raises WalletError: no reason given (field remark).
    :raises NotPermitted: the proposer lacks the kind's permission.
    :raises ProposalPending: a proposal for the same target waits already.
    """
    change_kind = kind_get(kind)
    text = (reason or "").strip()
    if not text:
        raise WalletError("Say why: a proposed change needs a reason.", field="remark", code="remark_required")
    if not user.has_perm(change_kind.permission):
        raise NotPermitted(f"Proposing this change needs the permission {change_kind.permission}.")
    key = _open_key(change_kind, target)
    waiting = SettingsChange.objects.filter(open_key=key).values_list("id", flat=True).first()
    if waiting is not None:
        raise ProposalPending(f"Proposal #{waiting} for {target} waits already: approve or reject it first.")
    try:
        with transaction.atomic():  # a savepoint: the same target may be proposed concurrently
            change = SettingsChange.objects.create(
                kind=kind,
                target=target[:128],
                summary=summary[:500],
                before={k: jsonable(v) for k, v in before.items()},
                after={k: jsonable(v) for k, v in after.items()},
                reason=text[:500],
                proposed_by_id=user.pk,
                proposed_at=now,
                open_key=key,
            )
    except IntegrityError:
        raise ProposalPending(f"A proposal for {target} waits already: approve or reject it first.") from None
    logger.info("change #%s proposed by %s: %s", change.pk, user.get_username(), change.summary)
    return change


def change_propose(
    *,
    kind: str,
    target: str,
    summary: str,
    before: Mapping[str, object],
    after: Mapping[str, object],
    reason: str,
    user: AbstractBaseUser,
    now: datetime | None = None,
) -> SettingsChange:
    """
    Propose a change that waits for a second person (see change_propose_in).

    :raises WalletError, NotPermitted, ProposalPending: as change_propose_in.
    """
    with transaction.atomic(durable=True):
        return change_propose_in(
            kind=kind,
            target=target,
            summary=summary,
            before=before,
            after=after,
            reason=reason,
            user=user,
            now=now or timezone.now(),
        )


def _decider_check(*, change: SettingsChange, user: AbstractBaseUser, approving: bool) -> ChangeKind:
    kind = kind_get(change.kind)
    if change.status != ChangeStatus.PENDING:
        raise Conflict(f"Proposal #{change.pk} is {change.get_status_display()}: there is nothing to decide.")
    if approving and user.pk == change.proposed_by_id:
        raise Conflict(f"You proposed #{change.pk}: a second person must approve it.", code="own_proposal")
    own = user.pk == change.proposed_by_id
    if not user.has_perm(kind.permission) or not (own or user.has_perm(DECIDE_PERMISSION)):
        raise NotPermitted(
            f"Deciding proposal #{change.pk} needs the permissions {DECIDE_PERMISSION} and {kind.permission}."
        )
    return kind


@transaction.atomic(durable=True)
def change_approve(
    *, change_id: int, user: AbstractBaseUser, remark: str = "", now: datetime | None = None
) -> SettingsChange:
    """
    Approve another person's proposal and apply it, under the proposal's row lock.

    Ends APPLIED; or STALE, with nothing applied, when the target changed since the proposal.
    :raises Conflict: the proposal is decided already, or it is the approver's own (own_proposal).
    :raises NotPermitted: the approver lacks DECIDE_PERMISSION or the kind's permission.
    """
    moment = now or timezone.now()
    change = SettingsChange.objects.select_for_update().get(id=change_id)
    kind = _decider_check(change=change, user=user, approving=True)
    outcome, note = ChangeStatus.APPLIED, (remark or "").strip()
    try:
        with transaction.atomic():  # a savepoint: a stale target is recorded, not applied
            kind.apply(change, user, moment)
    except ProposalStale as stale:
        outcome = ChangeStatus.STALE
        note = f"not applied: {stale.message}" + (f" ({note})" if note else "")
    _decided(change=change, user=user, status=outcome, remark=note, now=moment)
    logger.warning(
        "change #%s (%s) %s by %s, proposed by %s",
        change.pk,
        change.summary,
        outcome.label,
        user.get_username(),
        change.proposed_by.get_username(),
    )
    return change


@transaction.atomic(durable=True)
def change_reject(
    *, change_id: int, user: AbstractBaseUser, remark: str, now: datetime | None = None
) -> SettingsChange:
    """
    Reject a proposal (its proposer may withdraw it so): nothing is applied.

    :raises WalletError: no remark.
    :raises Conflict, NotPermitted: as change_approve (the proposer may reject their own).
    """
    text = (remark or "").strip()
    if not text:
        raise WalletError("Say why the change is rejected.", field="remark", code="remark_required")
    change = SettingsChange.objects.select_for_update().get(id=change_id)
    _decider_check(change=change, user=user, approving=False)
    _decided(change=change, user=user, status=ChangeStatus.REJECTED, remark=text, now=now or timezone.now())
    logger.info("change #%s rejected by %s: %s", change.pk, user.get_username(), text)
    return change


def _decided(*, change: SettingsChange, user: AbstractBaseUser, status: ChangeStatus, remark: str, now: datetime):
    change.status = status
    change.decided_by_id = user.pk
    change.decided_at = now
    change.decision_remark = remark[:500]
    change.open_key = None
    change.save(update_fields=["status", "decided_by", "decided_at", "decision_remark", "open_key"])
