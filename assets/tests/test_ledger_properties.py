"""Ledger invariants under any sequence of postings, each possibly delivered twice."""

from __future__ import annotations

import contextlib
import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig

OPS = {
    "credit": (assets_services.balance_credit, BusinessType.RECHARGE),
    "debit": (assets_services.balance_debit, BusinessType.ADJUSTMENT_DEBIT),
    "freeze": (assets_services.balance_freeze, BusinessType.WITHDRAW_FREEZE),
    "unfreeze": (assets_services.balance_unfreeze, BusinessType.WITHDRAW_UNFREEZE),
    "settle": (assets_services.balance_settle_frozen, BusinessType.WITHDRAW_SETTLE),
}
AMOUNTS = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000"), places=8)


class TestLedgerInvariants(TestCase):
    @settings(max_examples=60, deadline=None)
    @given(
        steps=st.lists(st.tuples(st.sampled_from(sorted(OPS)), AMOUNTS), max_size=25),
        replayed=st.integers(min_value=0, max_value=24),
    )
    def test_flows_chain_to_the_balance_and_a_replay_changes_nothing(self, steps, replayed):
        user = get_user_model().objects.create_user(username="prop")
        btc = CoinConfig.objects.get(coin_id="BTC")
        booked = 0

        for i, (op, amount) in enumerate(steps):
            service, business_type = OPS[op]
            for attempt in range(2 if i == replayed else 1):
                flows_before = Flow.objects.count()
                with contextlib.suppress(assets_services.InsufficientFunds), transaction.atomic():
                    service(user_id=user.id, coin=btc, amount=amount, business_type=business_type, biz_ref=f"s{i}")
                    if attempt == 0:
                        booked += 1
                if attempt == 1:
                    assert Flow.objects.count() == flows_before  # the replay booked nothing

        balance = Balance.objects.filter(user=user, coin=btc).first()
        flows = list(Flow.objects.filter(user=user, coin=btc).order_by("id"))
        assert len(flows) == booked
        assert OutboxMessage.objects.count() == len(flows)
        assert all(b.balance_before == a.balance_after for a, b in itertools.pairwise(flows))
        assert all(b.frozen_before == a.frozen_after for a, b in itertools.pairwise(flows))
        if balance is not None:
            assert balance.available == sum((f.amount for f in flows), Decimal(0))
            assert balance.frozen == sum((f.frozen_amount for f in flows), Decimal(0))
            assert balance.available >= 0 and balance.frozen >= 0
        assert assets_selectors.ledger_mismatches() == []
