"""
Circuit breakers: per coin, a switch that stops signing withdrawals of that coin.

Tripped by reconciliation (ledger and chain disagree), by the payout path on an impossible state
(an output of a payout spent by another transaction), and by ops (admin action, ops API). Each
trip raises a critical BREAKER_TRIPPED alert. While tripped, withdrawals are still accepted and
approved; they wait unsigned (the payout's signing check reads breaker_tripped under the
withdrawal's row lock) and the user sees why (`waiting_reason`).

Clearing takes two people: one proposes it with a remark (breaker_clear_propose), another with the
permission approves it (controls.proposals); it applies only if the breaker was not tripped again
since the proposal (its version). Trips and clears are kept in coin_breaker_log.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from coins import selectors as coins_selectors
from controls import proposals
from controls.models import BreakerAction, BreakerLog, BreakerSource, CoinBreaker, SettingsChange
from monitoring import services as monitoring_services
from monitoring.models import Severity
from wallet_project.errors import Conflict, WalletError

logger = logging.getLogger(__name__)

ALERT_KIND = "BREAKER_TRIPPED"
CLEAR_KIND = "breaker_clear"
CLEAR_PERMISSION = "controls.clear_coinbreaker"
TRIP_PERMISSION = "controls.trip_coinbreaker"


def alert_subject(coin_id: str) -> str:
    return f"coin {coin_id}"


def _breaker_lock(coin_id: str) -> CoinBreaker:
    try:
        with transaction.atomic():  # a savepoint: another tripper may create the row first
            CoinBreaker.objects.get_or_create(coin_id=coin_id)
    except IntegrityError:
        pass
    return CoinBreaker.objects.select_for_update().get(coin_id=coin_id)


def _log(*, coin_id: str, action: BreakerAction, source: str, reason: str, user_id: int | None, now: datetime) -> None:
    BreakerLog.objects.create(
        coin_id=coin_id, action=action, source=source, reason=reason[:500], user_id=user_id, create_time=now
    )


@transaction.atomic(savepoint=False)
def breaker_trip(
    *,
    coin_id: str,
    reason: str,
    source: str,
    user: AbstractBaseUser | None = None,
    now: datetime | None = None,
) -> CoinBreaker:
    """
    Trip the coin's circuit breaker: its withdrawals stop being signed until two people clear it.

    Joins the caller's transaction (outside one, it is its own): a trip decided in a transaction
    that then rolls back rolls back with it, so call it after the rollback when the trip must
    survive a failure. Tripping a tripped breaker counts the repeat (log row, alert count) and
    keeps the first reason; any repeat makes a pending clearing proposal stale.
    :raises WalletError: no reason (reason_required) or an unknown source (invalid_source).
    :raises UnknownCoin: no such coin.
    """
    text = (reason or "").strip()
    if not text:
        raise WalletError("Say why the breaker is tripped.", field="reason", code="reason_required")
    if source not in BreakerSource.values:
        raise WalletError(f"Unknown breaker source {source!r}.", field="source", code="invalid_source")
    moment = now or timezone.now()
    coin = coins_selectors.coin_get(coin_id=coin_id)
    breaker = _breaker_lock(coin.coin_id)
    breaker.version += 1
    breaker.trip_count += 1
    breaker.last_tripped_at = moment
    if breaker.tripped:
        action = BreakerAction.REPEAT
    else:
        action = BreakerAction.TRIP
        breaker.tripped = True
        breaker.source = source
        breaker.reason = text[:500]
        breaker.tripped_at = moment
        breaker.tripped_by_id = user.pk if user is not None else None
        breaker.trip_count = 1
    breaker.save()
    who = f" by {user.get_username()}" if user is not None else ""
    _log(
        coin_id=coin.coin_id,
        action=action,
        source=source,
        reason=text,
        user_id=user.pk if user is not None else None,
        now=moment,
    )
    monitoring_services.alert_raise(
        severity=Severity.CRITICAL,
        kind=ALERT_KIND,
        subject=alert_subject(coin.coin_id),
        message=(
            f"circuit breaker of {coin.coin_id} tripped ({BreakerSource(source).label}{who}): {text}. Withdrawals "
            f"of {coin.coin_id} are accepted but not signed until it is cleared (proposed, then approved by a "
            "second person)"
        ),
        now=moment,
    )
    logger.critical("circuit breaker of %s tripped by %s%s: %s", coin.coin_id, source, who, text)
    return breaker


@transaction.atomic(savepoint=False)
def breaker_trip_chain(
    *, chain_id: str, reason: str, source: str, user: AbstractBaseUser | None = None, now: datetime | None = None
) -> list[CoinBreaker]:
    """Trip the breaker of every coin of the chain (a fault of an address or output they share)."""
    coin_ids = list(
        coins_selectors.coin_list(enabled_only=False).filter(chain_id=chain_id).values_list("coin_id", flat=True)
    )
    return [breaker_trip(coin_id=c, reason=reason, source=source, user=user, now=now) for c in coin_ids]


def breaker_clear_propose(
    *, coin_id: str, user: AbstractBaseUser, remark: str, now: datetime | None = None
) -> SettingsChange:
    """
    Propose clearing the coin's tripped breaker; it clears once a second person approves.

    :raises Conflict: the breaker is not tripped (breaker_not_tripped).
    :raises WalletError, NotPermitted, ProposalPending: as proposals.change_propose_in.
    """
    moment = now or timezone.now()
    with transaction.atomic(durable=True):
        coin = coins_selectors.coin_get(coin_id=coin_id)
        breaker = CoinBreaker.objects.select_for_update().filter(coin_id=coin.coin_id).first()
        if breaker is None or not breaker.tripped:
            raise Conflict(f"The circuit breaker of {coin.coin_id} is not tripped.", code="breaker_not_tripped")
        before = {
            "tripped": True,
            "version": breaker.version,
            "trip_count": breaker.trip_count,
            "source": breaker.source,
            "reason": breaker.reason,
            "tripped_at": breaker.tripped_at,
        }
        return proposals.change_propose_in(
            kind=CLEAR_KIND,
            target=coin.coin_id,
            summary=(
                f"Clear the circuit breaker of {coin.coin_id} (tripped {breaker.trip_count}x, first by "
                f"{breaker.get_source_display()}: {breaker.reason})"
            ),
            before=before,
            after={"tripped": False},
            reason=remark,
            user=user,
            now=moment,
        )


def breaker_clear_apply(change: SettingsChange, approver: AbstractBaseUser, now: datetime) -> None:
    """The breaker_clear kind: clear the breaker if it is as tripped as when the clear was proposed."""
    breaker = CoinBreaker.objects.select_for_update().get(coin_id=change.target)
    if not breaker.tripped:
        raise proposals.ProposalStale(f"the breaker of {breaker.coin_id} is not tripped any more")
    if breaker.version != change.before.get("version"):
        raise proposals.ProposalStale(
            f"the breaker of {breaker.coin_id} was tripped again since the proposal "
            f"({breaker.trip_count} trips now): look at the new trips and propose again"
        )
    remark = f"{change.reason} (proposed by {change.proposed_by.get_username()}, approved by {approver.get_username()})"
    breaker.tripped = False
    breaker.version += 1
    breaker.trip_count = 0
    breaker.cleared_at = now
    breaker.cleared_by_id = approver.pk
    breaker.clear_remark = remark[:500]
    breaker.save()
    _log(coin_id=breaker.coin_id, action=BreakerAction.CLEAR, source="", reason=remark, user_id=approver.pk, now=now)
    monitoring_services.alert_resolve(
        kind=ALERT_KIND, subject=alert_subject(breaker.coin_id), how=f"breaker cleared: {remark}", now=now
    )
    logger.warning("circuit breaker of %s cleared: %s", breaker.coin_id, remark)
