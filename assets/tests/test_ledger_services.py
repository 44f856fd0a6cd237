from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from coins import selectors as coins_selectors
from coins.models import CoinConfig

pytestmark = pytest.mark.django_db


@pytest.fixture
def btc() -> CoinConfig:
    return CoinConfig.objects.get(coin_id="BTC")


@pytest.fixture
def eth() -> CoinConfig:
    return CoinConfig.objects.get(coin_id="ETH")


def credit(user, coin, amount, ref="d1"):
    return assets_services.balance_credit(
        user_id=user.id, coin=coin, amount=amount, business_type=BusinessType.RECHARGE, biz_ref=ref
    )


class TestBalanceCredit:
    def test_adds_to_available_and_writes_one_flow_and_one_event(self, user, btc):
        flow = credit(user, btc, Decimal("0.001"), ref="R1")

        balance = Balance.objects.get(user=user, coin=btc)
        assert balance.available == Decimal("0.001")
        assert balance.frozen == 0
        assert (flow.balance_before, flow.balance_after, flow.amount) == (0, Decimal("0.001"), Decimal("0.001"))
        event = OutboxMessage.objects.get()
        assert event.topic == "asset-topic" and event.tags == "ASSET_CHANGE"
        assert event.keys == flow.flow_no and event.partition_key == str(user.id)
        assert event.payload["header"]["message_id"] == event.message_id
        assert event.payload["body"] == {
            "flow_no": flow.flow_no,
            "user_id": user.id,
            "coin_id": "BTC",
            "business_type": 1,
            "amount": "0.001",
            "balance_before": "0",
            "balance_after": "0.001",
            "ref_tx_hash": "",
            "frozen_amount": "0",
            "frozen_before": "0",
            "frozen_after": "0",
            "debt_amount": "0",
            "debt_before": "0",
            "debt_after": "0",
            "biz_ref": "R1",
        }

    def test_books_a_replayed_reference_once(self, user, btc):
        first = credit(user, btc, Decimal("1.5"), ref="R1")

        replay = credit(user, btc, Decimal("1.5"), ref="R1")

        assert replay.id == first.id
        assert Balance.objects.get(user=user, coin=btc).available == Decimal("1.5")
        assert Flow.objects.count() == 1 and OutboxMessage.objects.count() == 1

    def test_refuses_a_replay_with_another_amount(self, user, btc):
        credit(user, btc, Decimal("1.5"), ref="R1")

        with pytest.raises(assets_services.FlowConflict), transaction.atomic():
            credit(user, btc, Decimal("2"), ref="R1")

        assert Balance.objects.get(user=user, coin=btc).available == Decimal("1.5")

    def test_refuses_a_replay_for_another_user(self, user, other_user, btc):
        credit(user, btc, Decimal("1"), ref="R1")

        with pytest.raises(assets_services.FlowConflict), transaction.atomic():
            credit(other_user, btc, Decimal("1"), ref="R1")

        assert not Balance.objects.filter(user=other_user, available__gt=0).exists()

    @pytest.mark.mysql  # SQLite stores decimals in floating point: 15 significant digits only
    def test_keeps_18_decimals_and_20_integer_digits_exact(self, user, eth):
        big = Decimal("99999999999999999999.999999999999999999")
        credit(user, eth, big - 1, ref="a")
        credit(user, eth, Decimal("0.000000000000000001"), ref="b")

        balance = Balance.objects.get(user=user, coin=eth)
        assert balance.available == Decimal("99999999999999999998.999999999999999999") + Decimal("1e-18")


class TestBadAmounts:
    @pytest.mark.parametrize(
        "amount",
        ["abc", "", "-1", "0", "0.000000001", "1e30", "NaN", "Infinity", "-0", 0.1, True, None, [], "1,5"],
    )
    def test_refuses_and_writes_nothing(self, user, btc, amount):
        with pytest.raises(coins_selectors.InvalidAmount) as refused, transaction.atomic():
            credit(user, btc, amount)

        assert refused.value.field == "amount"
        assert refused.value.message
        assert Flow.objects.count() == 0 and OutboxMessage.objects.count() == 0
        assert not Balance.objects.filter(available__gt=0).exists()

    @pytest.mark.mysql  # SQLite stores decimals in floating point: 15 significant digits only
    def test_refuses_a_too_large_sum_rather_than_rounding(self, user, eth):
        credit(user, eth, Decimal("99999999999999999999"), ref="a")

        with pytest.raises(Exception), transaction.atomic():  # noqa: B017 - the database or exact() refuses
            credit(user, eth, Decimal("1"), ref="b")

        assert Balance.objects.get(user=user, coin=eth).available == Decimal("99999999999999999999")


class TestFreezeAndSettle:
    def test_follows_a_withdrawal_from_apply_to_payout(self, user, btc):
        credit(user, btc, Decimal("2"), ref="R1")

        assets_services.balance_freeze(
            user_id=user.id, coin=btc, amount=Decimal("1.2"), business_type=BusinessType.WITHDRAW_FREEZE, biz_ref="W1"
        )
        assets_services.balance_settle_frozen(
            user_id=user.id, coin=btc, amount=Decimal("1.2"), business_type=BusinessType.WITHDRAW_SETTLE, biz_ref="W1"
        )

        balance = Balance.objects.get(user=user, coin=btc)
        assert (balance.available, balance.frozen) == (Decimal("0.8"), 0)
        assert assets_selectors.ledger_mismatches() == []

    def test_unfreeze_returns_the_frozen_amount(self, user, btc):
        credit(user, btc, Decimal("2"), ref="R1")
        assets_services.balance_freeze(
            user_id=user.id, coin=btc, amount=Decimal("2"), business_type=BusinessType.WITHDRAW_FREEZE, biz_ref="W1"
        )

        assets_services.balance_unfreeze(
            user_id=user.id, coin=btc, amount=Decimal("2"), business_type=BusinessType.WITHDRAW_UNFREEZE, biz_ref="W1"
        )

        balance = Balance.objects.get(user=user, coin=btc)
        assert (balance.available, balance.frozen) == (Decimal("2"), 0)

    @pytest.mark.parametrize(
        ("operation", "business_type"),
        [
            (assets_services.balance_debit, BusinessType.ADJUSTMENT_DEBIT),
            (assets_services.balance_freeze, BusinessType.WITHDRAW_FREEZE),
            (assets_services.balance_unfreeze, BusinessType.WITHDRAW_UNFREEZE),
            (assets_services.balance_settle_frozen, BusinessType.WITHDRAW_SETTLE),
        ],
    )
    def test_never_lets_a_balance_go_negative(self, user, btc, operation, business_type):
        credit(user, btc, Decimal("1"), ref="R1")

        with pytest.raises(assets_services.InsufficientFunds), transaction.atomic():
            operation(user_id=user.id, coin=btc, amount=Decimal("1.00000001"), business_type=business_type, biz_ref="X")

        balance = Balance.objects.get(user=user, coin=btc)
        assert (balance.available, balance.frozen) == (Decimal("1"), 0)
        assert Flow.objects.count() == 1


class TestLedgerMismatches:
    def test_reports_a_balance_edited_behind_the_ledgers_back(self, user, btc):
        credit(user, btc, Decimal("1"), ref="R1")
        Balance.objects.filter(user=user, coin=btc).update(available=Decimal("5"))

        mismatches = assets_selectors.ledger_mismatches()

        assert mismatches == [
            {
                "user_id": user.id,
                "coin_id": "BTC",
                "available": Decimal("5"),
                "frozen": 0,
                "debt": 0,
                "flows_available": Decimal("1"),
                "flows_frozen": 0,
                "flows_debt": 0,
            }
        ]
