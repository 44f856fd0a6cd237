"""House accounts: the exchange's own postings, signed, idempotent, with events, checked against their flows."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection, transaction

from assets import selectors as assets_selectors
from assets.house import house_book
from assets.models import BusinessType, HouseAccount, HouseBalance, HouseFlow, OutboxMessage
from assets.services import FlowConflict
from coins.models import CoinConfig
from wallet_project.db import retry_on_deadlock
from wallet_project.errors import WalletError


@pytest.fixture
def eth(db) -> CoinConfig:
    return CoinConfig.objects.get(coin_id="ETH")


def _fee(eth: CoinConfig, ref: str, amount: str = "0.01") -> HouseFlow:
    return house_book(
        coin=eth,
        account=HouseAccount.WITHDRAW_FEES,
        amount=Decimal(amount),
        business_type=BusinessType.HOUSE_WITHDRAW_FEE,
        biz_ref=ref,
    )


class TestHouseBook:
    def test_a_fee_and_a_network_cost_leave_signed_balances_and_one_event_each(self, eth):
        _fee(eth, "W1")
        house_book(
            coin=eth,
            account=HouseAccount.NETWORK_FEES,
            amount=Decimal("-0.000021"),
            business_type=BusinessType.HOUSE_NETWORK_FEE,
            biz_ref="P1",
            ref_tx_hash="0xabc",
        )
        assert assets_selectors.house_balances(coin_id="ETH") == {
            "withdraw_fees": Decimal("0.01"),
            "network_fees": Decimal("-0.000021"),
        }
        assert assets_selectors.house_total(coin_id="ETH") == Decimal("0.009979")
        events = [m.payload["body"] for m in OutboxMessage.objects.order_by("id")]
        assert [(e["account"], e["amount"], e["user_id"]) for e in events] == [
            ("withdraw_fees", "0.01", None),
            ("network_fees", "-0.000021", None),
        ]
        assert OutboxMessage.objects.filter(partition_key="house").count() == 2
        assert assets_selectors.house_mismatches() == []

    def test_a_replay_books_once_and_a_different_replay_is_a_conflict(self, eth):
        first = _fee(eth, "W1")
        assert _fee(eth, "W1").flow_no == first.flow_no
        # A posting joins its caller's transaction: the caller's savepoint takes the refusal.
        with pytest.raises(FlowConflict), transaction.atomic():
            _fee(eth, "W1", amount="0.02")
        assert HouseFlow.objects.count() == 1
        assert HouseBalance.objects.get().balance == Decimal("0.01")

    @pytest.mark.parametrize(
        ("amount", "business_type", "field"),
        [
            ("0", BusinessType.HOUSE_WITHDRAW_FEE, "amount"),
            ("0.0000000000000000001", BusinessType.HOUSE_WITHDRAW_FEE, "amount"),
            ("1", BusinessType.RECHARGE, "business_type"),
        ],
    )
    def test_bad_postings_are_refused_and_write_nothing(self, eth, amount, business_type, field):
        with pytest.raises(WalletError) as refused, transaction.atomic():
            house_book(
                coin=eth,
                account=HouseAccount.WITHDRAW_FEES,
                amount=Decimal(amount),
                business_type=business_type,
                biz_ref="X",
            )
        assert refused.value.field == field
        assert not HouseFlow.objects.exists()
        assert not OutboxMessage.objects.exists()

    def test_a_balance_changed_behind_the_ledger_is_found(self, eth):
        _fee(eth, "W1")
        _fee(eth, "W2")
        HouseBalance.objects.update(balance=Decimal("0.03"))
        assert assets_selectors.house_mismatches() == [
            {"account": "withdraw_fees", "coin_id": "ETH", "balance": Decimal("0.03"), "flows": Decimal("0.02")}
        ]


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_threads_booking_one_account_lose_no_update_and_book_each_reference_once():
    eth = CoinConfig.objects.get(coin_id="ETH")
    threads = 6
    start = threading.Barrier(threads)

    def worker(n: int) -> None:
        try:
            start.wait()
            for i in range(20):
                # Every thread also books the shared references: each must land once.
                for ref in (f"t{n}-{i}", f"shared-{i}"):
                    retry_on_deadlock(
                        lambda ref=ref: _atomic(lambda: _fee(eth, ref, amount="0.001")),
                        attempts=10,
                    )
        finally:
            connection.close()

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, range(threads)))
    assert HouseFlow.objects.count() == threads * 20 + 20
    assert HouseBalance.objects.get().balance == Decimal("0.001") * (threads * 20 + 20)
    assert assets_selectors.house_mismatches() == []


def _atomic(work):
    with transaction.atomic(durable=True):
        return work()
