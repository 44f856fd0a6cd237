"""hot_wallet_select: round robin and balance-based, separate pools per business (wallet_type)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from addresses import services
from addresses.models import AddressStatus, WalletAddress


def _pool(wallet_type: str, balances: list[str]) -> list[WalletAddress]:
    rows = services.hot_addresses_create(chain_id="ETH", wallet_type=wallet_type, count=len(balances))
    for row, balance in zip(rows, balances, strict=True):
        WalletAddress.objects.filter(id=row.id).update(balance=Decimal(balance))
    return rows


def _select(wallet_type: str, amount: str, strategy: str) -> WalletAddress:
    with transaction.atomic():
        return services.hot_wallet_select(
            chain_id="ETH", wallet_type=wallet_type, amount=Decimal(amount), strategy=strategy
        )


@pytest.mark.django_db
class TestHotWalletSelect:
    def test_round_robin_takes_turns_in_id_order(self, hot_seeds):
        a, b, c = _pool("withdraw", ["5", "5", "5"])

        picks = [_select("withdraw", "1", "round_robin").id for _ in range(5)]

        assert picks == [a.id, b.id, c.id, a.id, b.id]

    def test_round_robin_skips_addresses_that_cannot_pay(self, hot_seeds):
        a, _poor, c = _pool("withdraw", ["5", "0.5", "5"])
        WalletAddress.objects.filter(id=c.id).update(status=AddressStatus.DISABLED)

        picks = [_select("withdraw", "1", "round_robin").id for _ in range(3)]

        assert picks == [a.id, a.id, a.id]

    def test_balance_strategy_takes_the_richest(self, hot_seeds):
        _, rich, _ = _pool("withdraw", ["5", "9.5", "7"])

        assert _select("withdraw", "1", "balance").id == rich.id
        assert _select("withdraw", "9", "balance").id == rich.id

    def test_pools_of_different_businesses_are_separate(self, hot_seeds):
        (withdraw,) = _pool("withdraw", ["1"])
        (collect,) = _pool("collect", ["100"])

        assert _select("withdraw", "1", "balance").id == withdraw.id
        assert _select("collect", "1", "round_robin").id == collect.id
        with pytest.raises(services.NoHotWallet):
            _select("withdraw", "50", "balance")

    def test_an_empty_pool_says_no_hot_address_exists_and_how_to_create_one(self, hot_seeds):
        _pool("collect", ["5"])

        with pytest.raises(services.NoHotWallet) as empty:
            _select("withdraw", "0", "round_robin")
        (only,) = _pool("withdraw", ["1"])
        WalletAddress.objects.filter(id=only.id).update(status=AddressStatus.DISABLED)
        with pytest.raises(services.NoHotWallet) as disabled:
            _select("withdraw", "0", "round_robin")

        assert "No hot address exists for chain ETH and pool 'withdraw'" in empty.value.message
        assert "manage.py create_hot_address --chain ETH --wallet-type withdraw" in empty.value.message
        assert "1 disabled or without a key" in disabled.value.message

    def test_refuses_an_unknown_strategy(self, hot_seeds):
        _pool("withdraw", ["1"])

        with pytest.raises(services.UnknownStrategy):
            _select("withdraw", "1", "random")

    def test_never_picks_a_cold_address(self, hot_seeds):
        cold = services.cold_address_add(
            chain_id="ETH", address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", wallet_type="withdraw"
        )
        WalletAddress.objects.filter(id=cold.id).update(balance=Decimal("1000"))

        with pytest.raises(services.NoHotWallet):
            _select("withdraw", "1", "balance")
