"""
The withdrawal risk rules: named rules, each with a verdict pass / hold for review / refuse.

- blacklist: the destination is on the exchange-wide blacklist → refuse.
- address_book: the user's "address book only" switch is on and the destination is not in their
  book, or its entry is still cooling → refuse.
- first_address: no completed withdrawal (of anyone) ever paid the destination, and the amount is
  above the coin's risk_first_address_amount → review.
- velocity: with this one, more than RISK_VELOCITY_MAX_COUNT withdrawals, or more than the coin's
  risk_velocity_amount, of the coin by the user within RISK_VELOCITY_WINDOW_MINUTES → review.
- hot_share: the amount is above RISK_HOT_SHARE_MAX of the coin's hot balance (the withdraw
  pool's last readings; BTC from the UTXO set) → review, with an ABNORMAL_TRANSACTION alert.

The services evaluate them inside the apply transaction (under the user's balance lock) and again
at every approval (under the withdrawal's lock), and record every verdict in withdraw_risk_verdict.
A refusal at apply is a 400 with the rule's code; at approval it rejects the withdrawal. Review
sends a withdrawal to PENDING_REVIEW even below the audit threshold. At signing, the refusing rules
and the coin's circuit breaker are checked once more (signing_stop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import Count, Sum

from addresses import selectors as addresses_selectors
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from controls import selectors as controls_selectors
from monitoring import selectors as monitoring_selectors
from monitoring import services as monitoring_services
from monitoring.models import Severity
from recharges import selectors as recharges_selectors
from utxos import selectors as utxos_selectors
from wallet_project.money import exact
from withdrawals.models import RiskOutcome, RiskStage, WithdrawRecord, WithdrawRiskVerdict, WithdrawStatus

BLACKLISTED = "address_blacklisted"
NOT_IN_BOOK = "address_not_in_book"
BOOK_COOLING = "address_book_cooling"

# Withdrawals counted by velocity: all but those whose money was released (as the daily limit).
_COUNTED = [
    s for s in WithdrawStatus if s not in (WithdrawStatus.REJECTED, WithdrawStatus.FAILED, WithdrawStatus.CANCELLED)
]


@dataclass(frozen=True)
class Candidate:
    """A withdrawal being applied for (withdraw_id None) or approved."""

    user_id: int
    coin: CoinConfig
    address: str
    amount: Decimal
    internal: bool
    withdraw_id: int | None = None


@dataclass(frozen=True)
class RuleVerdict:
    rule: str
    outcome: RiskOutcome
    detail: str  # for the auditor
    code: str = ""  # a refusal's error code
    message: str = ""  # a refusal's message to the user
    alert: bool = False  # review with an ABNORMAL_TRANSACTION alert


def _text(coin: CoinConfig, amount: Decimal) -> str:
    return coins_selectors.amount_format(coin=coin, amount=amount)


# --- the rules -------------------------------------------------------------------------------------


def _blacklist(c: Candidate, now: datetime) -> RuleVerdict:
    hit = controls_selectors.blacklist_hit(chain_id=c.coin.chain_id, address=c.address)
    if hit is None:
        return RuleVerdict("blacklist", RiskOutcome.PASS, "not blacklisted")
    return RuleVerdict(
        "blacklist",
        RiskOutcome.REFUSE,
        f"the destination is blacklisted ({hit.reason or 'no reason given'})",
        code=BLACKLISTED,
        message="Withdrawals to this address are not allowed.",
    )


def _address_book(c: Candidate, now: datetime) -> RuleVerdict:
    switch = controls_selectors.book_switch(user_id=c.user_id, now=now)
    if not switch.book_only:
        return RuleVerdict("address_book", RiskOutcome.PASS, "the user's 'address book only' switch is off")
    entry = controls_selectors.book_entry(user_id=c.user_id, chain_id=c.coin.chain_id, address=c.address)
    if entry is None:
        return RuleVerdict(
            "address_book",
            RiskOutcome.REFUSE,
            "'address book only' is on and the destination is not in the user's address book",
            code=NOT_IN_BOOK,
            message="Your account withdraws only to addresses in your address book: add this address first.",
        )
    if now < entry.usable_at:
        return RuleVerdict(
            "address_book",
            RiskOutcome.REFUSE,
            f"the destination's address book entry is cooling until {entry.usable_at.isoformat()}",
            code=BOOK_COOLING,
            message=f"This address was added to your address book recently: it can be used from "
            f"{entry.usable_at.isoformat()}.",
        )
    return RuleVerdict("address_book", RiskOutcome.PASS, f"in the address book since {entry.create_time.isoformat()}")


def _first_address(c: Candidate, now: datetime) -> RuleVerdict:
    threshold = c.coin.risk_first_address_amount
    if threshold is None:
        return RuleVerdict("first_address", RiskOutcome.PASS, f"off for {c.coin.coin_id}")
    paid = (
        WithdrawRecord.objects.filter(
            status=WithdrawStatus.COMPLETED, to_address=c.address, coin__chain_id=c.coin.chain_id
        )
        .values_list("to_address", flat=True)
        .iterator(chunk_size=100)
    )
    # The column compares without case on MySQL; a TRON (base58) address is case-sensitive.
    if any(address == c.address for address in paid):
        return RuleVerdict("first_address", RiskOutcome.PASS, "the destination was paid before")
    if c.amount > threshold:
        return RuleVerdict(
            "first_address",
            RiskOutcome.REVIEW,
            f"first withdrawal to an address never paid before, above {_text(c.coin, threshold)}",
        )
    return RuleVerdict("first_address", RiskOutcome.PASS, f"never paid before, at or below {_text(c.coin, threshold)}")


def _velocity(c: Candidate, now: datetime) -> RuleVerdict:
    minutes = settings.RISK_VELOCITY_WINDOW_MINUTES
    window = (
        WithdrawRecord.objects.filter(
            user_id=c.user_id,
            coin_id=c.coin.coin_id,
            status__in=_COUNTED,
            create_time__gt=now - timedelta(minutes=minutes),
        )
        .exclude(id=c.withdraw_id)
        .aggregate(n=Count("id"), total=Sum("amount"))
    )
    count = window["n"] + 1  # with this one
    with exact():
        total = (window["total"] or Decimal(0)) + c.amount
    max_count, max_amount = settings.RISK_VELOCITY_MAX_COUNT, c.coin.risk_velocity_amount
    seen = f"{count} withdrawal(s), {_text(c.coin, total)} within {minutes} min"
    if max_count and count > max_count:
        return RuleVerdict("velocity", RiskOutcome.REVIEW, f"{seen}: more than {max_count} withdrawals")
    if max_amount is not None and total > max_amount:
        return RuleVerdict("velocity", RiskOutcome.REVIEW, f"{seen}: more than {_text(c.coin, max_amount)}")
    return RuleVerdict("velocity", RiskOutcome.PASS, seen)


def hot_balance(*, coin: CoinConfig) -> Decimal | None:
    """What the withdraw pool's hot addresses hold of the coin (last readings; BTC: the UTXO set), or None."""
    pool = list(
        addresses_selectors.hot_addresses(
            chain_id=coin.chain_id, wallet_type=settings.WITHDRAW_HOT_WALLET_TYPE
        ).values_list("address", flat=True)
    )
    if not pool:
        return None
    if utxos_selectors.tracks(chain_id=coin.chain_id):
        height = recharges_selectors.scan_height(chain_id=coin.chain_id)
        if height is None:
            return None
        held = utxos_selectors.utxo_balance(
            tip_height=height, wallet_type=settings.WITHDRAW_HOT_WALLET_TYPE, kinds=utxos_selectors.HOT_POOL
        )
        return coins_selectors.amount_from_base_units(coin=coin, base_units=held.spendable_sats + held.unconfirmed_sats)
    return monitoring_selectors.hot_balance_total(coin_id=coin.coin_id, addresses=pool)


def _hot_share(c: Candidate, now: datetime) -> RuleVerdict:
    share = settings.RISK_HOT_SHARE_MAX
    if not share:
        return RuleVerdict("hot_share", RiskOutcome.PASS, "off (RISK_HOT_SHARE_MAX is 0)")
    if c.internal:
        return RuleVerdict("hot_share", RiskOutcome.PASS, "an internal transfer: nothing leaves the hot wallet")
    held = hot_balance(coin=c.coin)
    if held is None:
        return RuleVerdict("hot_share", RiskOutcome.PASS, "the hot balance is unknown (no reading yet)")
    with exact():
        limit = held * share
    if c.amount > limit:
        return RuleVerdict(
            "hot_share",
            RiskOutcome.REVIEW,
            f"{_text(c.coin, c.amount)} is more than {share:%} of the hot balance of {_text(c.coin, held)}",
            alert=True,
        )
    return RuleVerdict("hot_share", RiskOutcome.PASS, f"at most {share:%} of the hot balance of {_text(c.coin, held)}")


Rule = Callable[[Candidate, datetime], RuleVerdict]

RULES: tuple[Rule, ...] = (_blacklist, _address_book, _first_address, _velocity, _hot_share)
# The rules that can refuse: checked again at signing.
REFUSING: tuple[Rule, ...] = (_blacklist, _address_book)


def rules_evaluate(*, candidate: Candidate, now: datetime) -> list[RuleVerdict]:
    """Return every rule's verdict on the candidate, in RULES order."""
    return [rule(candidate, now) for rule in RULES]


def refusal(verdicts: Sequence[RuleVerdict]) -> RuleVerdict | None:
    return next((v for v in verdicts if v.outcome == RiskOutcome.REFUSE), None)


def reviews(verdicts: Sequence[RuleVerdict]) -> list[RuleVerdict]:
    return [v for v in verdicts if v.outcome == RiskOutcome.REVIEW]


def verdicts_record(
    *, record: WithdrawRecord, stage: RiskStage, verdicts: Sequence[RuleVerdict], now: datetime
) -> None:
    """Store the verdicts on the withdrawal and raise the alerts they ask for, in the caller's transaction."""
    WithdrawRiskVerdict.objects.bulk_create(
        [
            WithdrawRiskVerdict(
                withdraw=record, stage=stage, rule=v.rule, outcome=v.outcome, detail=v.detail[:500], create_time=now
            )
            for v in verdicts
        ]
    )
    for verdict in verdicts:
        if verdict.alert:
            monitoring_services.alert_raise(
                severity=Severity.CRITICAL,
                kind="ABNORMAL_TRANSACTION",
                subject=f"withdrawal {record.withdraw_no}",
                message=f"withdrawal {record.withdraw_no} of user {record.user_id} held for review by rule "
                f"{verdict.rule}: {verdict.detail}",
                now=now,
            )


def blacklist_attempt_alert(*, user_id: int, coin_id: str, address: str) -> None:
    """Alert on a refused withdrawal to a blacklisted address (after its transaction rolled back)."""
    monitoring_services.alert_raise_alone(
        severity=Severity.CRITICAL,
        kind="ABNORMAL_TRANSACTION",
        subject=f"user {user_id}",
        message=f"user {user_id} applied for a withdrawal of {coin_id} to blacklisted address {address}: refused",
    )


@dataclass(frozen=True)
class SigningStop:
    message: str
    alert_kind: str | None


def signing_stop(*, record: WithdrawRecord, coin: CoinConfig, now: datetime) -> SigningStop | None:
    """
    Return why a locked, approved withdrawal must not be signed now (its coin's breaker, a refusing rule), or None.
    """
    if controls_selectors.breaker_tripped(coin_id=coin.coin_id):
        return SigningStop(
            f"withdrawal {record.withdraw_no} waits unsigned: the circuit breaker of {coin.coin_id} is tripped",
            alert_kind=None,  # the trip raised its own alert
        )
    candidate = Candidate(
        user_id=record.user_id,
        coin=coin,
        address=record.to_address,
        amount=record.amount,
        internal=record.to_user_id is not None,
        withdraw_id=record.id,
    )
    refused = refusal([rule(candidate, now) for rule in REFUSING])
    if refused is None:
        return None
    return SigningStop(
        f"withdrawal {record.withdraw_no} waits unsigned: risk rule {refused.rule} refuses it now ({refused.detail}); "
        "reject it in the admin",
        alert_kind="ABNORMAL_TRANSACTION",
    )


# The refusing rules a group screen covers (signing_clear): a rule added to REFUSING without a
# screen here makes signing_clear clear nothing, so every withdrawal is checked by signing_stop.
_SCREENED: frozenset[Rule] = frozenset((_blacklist, _address_book))


def signing_clear(*, records: Sequence[WithdrawRecord], coin: CoinConfig) -> set[int]:
    """
    Return the ids among locked, approved withdrawals of coin that signing_stop would certainly let
    through, by one query per check: the coin's breaker is not tripped, no destination has a
    blacklist entry on the coin's chain (blacklist_hits: the same match as blacklist_hit), no user
    has the "address book only" switch on. It errs towards clearing too few: those not cleared go
    to signing_stop, one by one, which decides.
    """
    if not set(REFUSING) <= _SCREENED or controls_selectors.breaker_tripped(coin_id=coin.coin_id):
        return set()
    blacklisted = controls_selectors.blacklist_hits(pairs={(coin.chain_id, r.to_address) for r in records})
    book_only = controls_selectors.book_only_users(user_ids={r.user_id for r in records})
    return {r.id for r in records if (coin.chain_id, r.to_address) not in blacklisted and r.user_id not in book_only}


def waiting_reasons(*, records: Sequence[WithdrawRecord]) -> dict[int, str]:
    """Return {withdrawal id: why it waits} of those among records waiting for a reason the user should know."""
    approved = {r.id: r.coin_id for r in records if r.status == WithdrawStatus.APPROVED and r.to_user_id is None}
    tripped = controls_selectors.breakers_tripped(coin_ids=set(approved.values())) if approved else set()
    reasons: dict[int, str] = {}
    for record in records:
        if record.status == WithdrawStatus.PENDING_REVIEW:
            reasons[record.id] = "Waiting for review by the exchange."
        elif record.id in approved and record.coin_id in tripped:
            reasons[record.id] = (
                f"Payouts of {record.coin_id} are paused for a safety check; your withdrawal is approved and will "
                "be sent when they resume."
            )
    return reasons
