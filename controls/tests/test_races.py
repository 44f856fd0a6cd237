"""
Risk controls under concurrency (MariaDB row locks, real threads): two people approving one
proposal apply it once; two first trips of a coin make one breaker; a second proposal for a target
racing the first is refused.
"""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from coins.models import CoinConfig
from controls import breakers, changes, proposals
from controls.models import BreakerLog, ChangeStatus, CoinBreaker, SettingsChange
from monitoring.models import Alert

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


def race(calls) -> list[object]:
    """Run the calls at once in threads (each on its own connection); return each result or exception."""
    start = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(i, call) -> None:
        start.wait(timeout=10)
        try:
            outcomes[i] = call()
        except Exception as error:
            outcomes[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def superuser(name: str):
    return get_user_model().objects.create_superuser(name, f"{name}@localhost", f"pw-{name}-1")


def test_two_people_approving_one_proposal_at_once_apply_it_once():
    root, amy, bea = superuser("root"), superuser("amy"), superuser("bea")
    change = changes.coin_settings_propose(
        coin_id="ETH", values={"withdraw_audit_threshold": Decimal(12)}, user=root, reason="review load"
    )

    outcomes = race(
        [
            lambda: proposals.change_approve(change_id=change.id, user=amy),
            lambda: proposals.change_approve(change_id=change.id, user=bea),
        ]
    )

    applied = [o for o in outcomes if isinstance(o, SettingsChange)]
    refused = [o for o in outcomes if isinstance(o, proposals.Conflict)]
    assert (len(applied), len(refused)) == (1, 1), outcomes
    change.refresh_from_db()
    assert change.status == ChangeStatus.APPLIED and change.decided_by in (amy, bea)
    assert CoinConfig.objects.get(coin_id="ETH").withdraw_audit_threshold == Decimal(12)


def test_two_first_trips_at_once_make_one_breaker_with_both_trips_counted():
    outcomes = race(
        [
            lambda: breakers.breaker_trip(coin_id="TRX", reason="reconciliation", source="RECONCILIATION"),
            lambda: breakers.breaker_trip(coin_id="TRX", reason="ops saw it too", source="OPS"),
        ]
    )

    assert all(isinstance(o, CoinBreaker) for o in outcomes), outcomes
    breaker = CoinBreaker.objects.get(coin_id="TRX")
    assert (breaker.tripped, breaker.trip_count) == (True, 2)
    assert sorted(BreakerLog.objects.values_list("action", flat=True)) == ["REPEAT", "TRIP"]
    assert Alert.objects.get(kind="BREAKER_TRIPPED").count == 2


def test_two_proposals_for_one_coin_at_once_leave_one_waiting():
    amy, bea = superuser("amy"), superuser("bea")

    outcomes = race(
        [
            lambda: changes.coin_settings_propose(
                coin_id="BTC", values={"withdraw_fee": Decimal("0.0006")}, user=amy, reason="fees"
            ),
            lambda: changes.coin_settings_propose(
                coin_id="BTC", values={"withdraw_fee": Decimal("0.0007")}, user=bea, reason="fees"
            ),
        ]
    )

    assert sum(isinstance(o, SettingsChange) for o in outcomes) == 1, outcomes
    assert sum(isinstance(o, proposals.ProposalPending) for o in outcomes) == 1
    assert SettingsChange.objects.filter(status=ChangeStatus.PENDING).count() == 1
