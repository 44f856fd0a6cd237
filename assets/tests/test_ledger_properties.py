"""Ledger invariants under any sequence of postings, debts included, each possibly delivered twice."""

from __future__ import annotations

import contextlib
import itertools
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from assets import debts as assets_debts
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig


def _reverse(*, user_id, coin, amount, business_type, biz_ref):
    return assets_debts.balance_reverse_credit(user_id=user_id, coin=coin, amount=amount, biz_ref=biz_ref)


def _clear(*, user_id, coin, amount, business_type, biz_ref):
    return assets_debts.balance_debt_clear(user_id=user_id, coin=coin, business_type=business_type, biz_ref=biz_ref)


# (service, business type, what it does to the user's net position: available + frozen - debt)
OPS = {
    "credit": (assets_services.balance_credit, BusinessType.RECHARGE, 1),
    "debit": (assets_services.balance_debit, BusinessType.ADJUSTMENT_DEBIT, -1),
    "freeze": (assets_services.balance_freeze, BusinessType.WITHDRAW_FREEZE, 0),
    "unfreeze": (assets_services.balance_unfreeze, BusinessType.WITHDRAW_UNFREEZE, 0),
    "settle": (assets_services.balance_settle_frozen, BusinessType.WITHDRAW_SETTLE, -1),
    # A reorg takes a credit back: what is available, the rest as debt. Net: -amount.
    "reverse": (_reverse, BusinessType.REORG_REVERSAL, -1),
    # Ops clear the whole debt, whatever amount: net + the debt cleared.
    "settle_debt": (_clear, BusinessType.REORG_DEBT_SETTLE, None),
    "write_off": (_clear, BusinessType.REORG_DEBT_WRITE_OFF, None),
}
AMOUNTS = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000"), places=8)


class TestLedgerInvariants(TestCase):
    @settings(max_examples=80, deadline=None)
    @given(
        steps=st.lists(st.tuples(st.sampled_from(sorted(OPS)), AMOUNTS), max_size=25),
        replayed=st.integers(min_value=0, max_value=24),
    )
    def test_flows_chain_to_the_balance_and_a_replay_changes_nothing(self, steps, replayed):
        user = get_user_model().objects.create_user(username="prop")
        btc = CoinConfig.objects.get(coin_id="BTC")
        net = Decimal(0)

        for i, (op, amount) in enumerate(steps):
            service, business_type, sign = OPS[op]
            for attempt in range(2 if i == replayed else 1):
                flows_before = Flow.objects.count()
                with contextlib.suppress(assets_services.InsufficientFunds), transaction.atomic():
                    booked = service(
                        user_id=user.id, coin=btc, amount=amount, business_type=business_type, biz_ref=f"s{i}"
                    )
                    if attempt == 0 and sign is not None:
                        net += sign * amount
                    elif attempt == 0 and booked is not None:
                        net -= booked.debt_amount
                if attempt == 1:
                    assert Flow.objects.count() == flows_before  # the replay booked nothing

        balance = Balance.objects.filter(user=user, coin=btc).first()
        flows = list(Flow.objects.filter(user=user, coin=btc).order_by("id"))
        assert OutboxMessage.objects.count() == len(flows)
        assert all(b.balance_before == a.balance_after for a, b in itertools.pairwise(flows))
        assert all(b.frozen_before == a.frozen_after for a, b in itertools.pairwise(flows))
        assert all(b.debt_before == a.debt_after for a, b in itertools.pairwise(flows))
        assert all(f.balance_after >= 0 and f.frozen_after >= 0 and f.debt_after >= 0 for f in flows)
        if balance is not None:
            assert balance.available == sum((f.amount for f in flows), Decimal(0))
            assert balance.frozen == sum((f.frozen_amount for f in flows), Decimal(0))
            assert balance.debt == sum((f.debt_amount for f in flows), Decimal(0))
            assert balance.available >= 0 and balance.frozen >= 0 and balance.debt >= 0
            # A debt is a negative balance: nothing is available while it is open ...
            assert balance.debt == 0 or balance.available == 0
            # ... and the net position is exactly what the postings gave and took.
            assert balance.available + balance.frozen - balance.debt == net
        else:
            assert net == 0
        repays = [f for f in flows if f.business_type == BusinessType.REORG_DEBT_REPAY]
        triggers = {f.flow_no: f for f in flows}
        assert all(triggers[r.biz_ref].amount > 0 and r.amount == r.debt_amount < 0 for r in repays)
        assert assets_selectors.ledger_mismatches() == []
