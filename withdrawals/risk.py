"""
The risk rules' verdicts an auditor sees beside a withdrawal in review.

A rule is a function of the withdrawal and the facts gathered for the page it is shown on
(`RiskFacts`, read in a few queries for a whole page), returning a `Verdict`, a list of them, or
None. The verdicts of the withdrawal risk rules (withdrawals.risk_rules), recorded at apply and at
each approval, are shown here from their rows, with what changed since (a breaker tripped, the
destination blacklisted). A new rule is one more function in RULES (and, if it needs a fact the
page does not gather yet, one more field of RiskFacts filled by `risk_facts`). These verdicts
inform a person; the checks that refuse a withdrawal live in the services, under the row lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from django.db.models import Count, Max

from coins.models import Switch
from controls import selectors as controls_selectors
from recharges import selectors as recharges_selectors
from wallet_project.display import amount_display
from withdrawals.models import RiskOutcome, WithdrawRecord, WithdrawRiskVerdict, WithdrawStatus


class Level(StrEnum):
    WARNING = "warning"  # look twice before approving
    INFO = "info"  # why this withdrawal is in the queue, how it will be paid


@dataclass(frozen=True)
class Verdict:
    code: str
    level: Level
    text: str


@dataclass(frozen=True)
class PaidBefore:
    """Completed withdrawals (of any user) to one address of one chain."""

    count: int
    last: datetime | None


@dataclass(frozen=True)
class RiskFacts:
    # (chain_id, address) -> completed withdrawals to it, of any user.
    paid_to: dict[tuple[str, str], PaidBefore] = field(default_factory=dict)
    # (user_id, chain_id, address) of every completed withdrawal among them.
    paid_by_user: set[tuple[int, str, str]] = field(default_factory=set)
    # Users whose withdrawals a reorg hold stops (approval is refused while it lasts).
    held_users: set[int] = field(default_factory=set)
    # withdrawal id -> the verdicts of the risk rules' latest evaluation (risk_rules, recorded).
    rule_verdicts: dict[int, list[WithdrawRiskVerdict]] = field(default_factory=dict)
    # Coins whose circuit breaker is tripped now.
    tripped: set[str] = field(default_factory=set)
    # (chain_id, address) of these withdrawals' destinations blacklisted now.
    blacklisted: set[tuple[str, str]] = field(default_factory=set)

    def paid_before(self, record: WithdrawRecord) -> PaidBefore:
        return self.paid_to.get((record.coin.chain_id, record.to_address), PaidBefore(count=0, last=None))


def risk_facts(records: Sequence[WithdrawRecord]) -> RiskFacts:
    """Gather what the rules read for these withdrawals (coin joined), in a few queries whatever their number."""
    if not records:
        return RiskFacts()
    addresses = {r.to_address for r in records}
    paid_to: dict[tuple[str, str], PaidBefore] = {}
    rows = (
        WithdrawRecord.objects.filter(status=WithdrawStatus.COMPLETED, to_address__in=addresses)
        .values("coin__chain_id", "to_address")
        .annotate(count=Count("id"), last=Max("complete_time"))
        .order_by()
    )
    for row in rows:
        # The column compares without case on MySQL; a TRON (base58) address is case-sensitive.
        if row["to_address"] in addresses:
            paid_to[(row["coin__chain_id"], row["to_address"])] = PaidBefore(count=row["count"], last=row["last"])
    users = {r.user_id for r in records}
    paid_by_user = {
        (user_id, chain_id, address)
        for user_id, chain_id, address in WithdrawRecord.objects.filter(
            status=WithdrawStatus.COMPLETED, to_address__in=addresses, user_id__in=users
        ).values_list("user_id", "coin__chain_id", "to_address")
        if address in addresses
    }
    held = {user_id for user_id in users if recharges_selectors.withdrawals_held(user_id=user_id)}
    return RiskFacts(
        paid_to=paid_to,
        paid_by_user=paid_by_user,
        held_users=held,
        rule_verdicts=_latest_verdicts([r.id for r in records]),
        tripped=controls_selectors.breakers_tripped(coin_ids={r.coin_id for r in records}),
        blacklisted=controls_selectors.blacklist_hits(pairs={(r.coin.chain_id, r.to_address) for r in records}),
    )


def _latest_verdicts(withdraw_ids: list[int]) -> dict[int, list[WithdrawRiskVerdict]]:
    """The verdicts of each withdrawal's latest rule evaluation (the rows sharing its latest time), one query."""
    latest: dict[int, list[WithdrawRiskVerdict]] = {}
    for row in WithdrawRiskVerdict.objects.filter(withdraw_id__in=withdraw_ids).order_by("withdraw_id", "-id"):
        rows = latest.setdefault(row.withdraw_id, [])
        if not rows or (rows[0].stage, rows[0].create_time) == (row.stage, row.create_time):
            rows.append(row)
    return latest


# --- the rules -----------------------------------------------------------------------------------


def _first_to_address(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    if (record.user_id, record.coin.chain_id, record.to_address) in facts.paid_by_user:
        return None
    return Verdict("first_to_address", Level.WARNING, "First withdrawal of this user to this address")


def _risk_rules(record: WithdrawRecord, facts: RiskFacts) -> list[Verdict]:
    """What the withdrawal risk rules said when last evaluated (apply or approval): held or refused, then passed."""
    rows = facts.rule_verdicts.get(record.id, [])
    found = [
        Verdict(
            f"rule_{row.rule}", Level.WARNING, f"{row.get_outcome_display().capitalize()}: {row.rule} — {row.detail}"
        )
        for row in sorted(rows, key=lambda r: r.id)
        if row.outcome != RiskOutcome.PASS
    ]
    passed = [row.rule for row in sorted(rows, key=lambda r: r.id) if row.outcome == RiskOutcome.PASS]
    if passed:
        stage = rows[0].get_stage_display()
        found.append(Verdict("rules_passed", Level.INFO, f"Risk rules passed {stage}: {', '.join(passed)}"))
    return found


def _breaker(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    if record.coin_id not in facts.tripped:
        return None
    return Verdict(
        "breaker_tripped",
        Level.WARNING,
        f"The circuit breaker of {record.coin_id} is tripped: approved withdrawals of it wait unsigned",
    )


def _blacklisted_now(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    if (record.coin.chain_id, record.to_address) not in facts.blacklisted:
        return None
    return Verdict(
        "blacklisted_now",
        Level.WARNING,
        "The destination is blacklisted now: an approval rejects it, and it is never signed",
    )


def _held(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    if record.user_id not in facts.held_users:
        return None
    return Verdict(
        "withdrawals_held",
        Level.WARNING,
        "The user's withdrawals are held (a reversed deposit is not settled): approval is refused meanwhile",
    )


def _coin_switched_off(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    if record.coin.is_enabled and record.coin.withdraw_enabled == Switch.ENABLED:
        return None
    return Verdict(
        "coin_withdrawals_off", Level.WARNING, f"Withdrawals of {record.coin_id} are switched off: approval is refused"
    )


def _above_audit_threshold(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    threshold = record.coin.withdraw_audit_threshold
    if record.amount <= threshold:
        return None
    return Verdict(
        "above_audit_threshold",
        Level.INFO,
        f"Above the audit threshold ({amount_display(threshold)} {record.coin_id})",
    )


def _two_auditors(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    if record.approvals_required < 2:
        return None
    # The number was fixed at apply from the thresholds then; today's threshold may differ.
    return Verdict(
        "two_auditors_required", Level.INFO, "Two auditors required (above the dual-audit threshold when applied for)"
    )


def _internal(record: WithdrawRecord, facts: RiskFacts) -> Verdict | None:
    if record.to_user_id is None:
        return None
    return Verdict(
        "internal_transfer",
        Level.INFO,
        f"Internal transfer to user {record.to_user.get_username()}: settled in the ledger, off chain, no fee",
    )


Rule = Callable[[WithdrawRecord, RiskFacts], Verdict | list[Verdict] | None]

RULES: list[Rule] = [
    _held,
    _coin_switched_off,
    _first_to_address,
    _blacklisted_now,
    _breaker,
    _risk_rules,
    _above_audit_threshold,
    _two_auditors,
    _internal,
]


def risk_verdicts(*, record: WithdrawRecord, facts: RiskFacts) -> list[Verdict]:
    """Return what every rule says about this withdrawal, warnings first."""
    found: list[Verdict] = []
    for rule in RULES:
        said = rule(record, facts)
        if isinstance(said, Verdict):
            found.append(said)
        elif said:
            found.extend(said)
    return sorted(found, key=lambda v: v.level != Level.WARNING)
