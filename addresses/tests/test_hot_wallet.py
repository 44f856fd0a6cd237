"""hot_wallet_select: round robin and balance-based, separate pools per business (wallet_type); change addresses."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from addresses import selectors, services
from addresses.models import AddressStatus, AddressType, WalletAddress

# The real balances of the coin paid, per address id, as the caller read them (node or UTXO set).
BALANCES: dict[int, Decimal] = {}


@pytest.fixture(autouse=True)
def _balances():
    BALANCES.clear()


def _pool(wallet_type: str, balances: list[str], region: str = "") -> list[WalletAddress]:
    rows = services.hot_addresses_create(chain_id="ETH", wallet_type=wallet_type, count=len(balances))
    for row, balance in zip(rows, balances, strict=True):
        BALANCES[row.id] = Decimal(balance)
        WalletAddress.objects.filter(id=row.id).update(region=region)
    return rows


def _select(wallet_type: str, amount: str, strategy: str, region: str = "") -> WalletAddress:
    with transaction.atomic():
        return services.hot_wallet_select(
            chain_id="ETH",
            wallet_type=wallet_type,
            amount=Decimal(amount),
            strategy=strategy,
            balances=BALANCES,
            region=region,
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

    def test_the_balance_column_of_the_row_is_not_what_counts(self, hot_seeds):
        a, b = _pool("withdraw", ["1", "8"])
        WalletAddress.objects.filter(id=a.id).update(balance=Decimal("1000"))  # nothing keeps it: ignored

        assert _select("withdraw", "1", "balance").id == b.id

    def test_an_unknown_balance_never_counts_as_enough(self, hot_seeds):
        a, b = _pool("withdraw", ["5", "5"])
        del BALANCES[a.id]

        assert [_select("withdraw", "1", "round_robin").id for _ in range(2)] == [b.id, b.id]
        assert _select("withdraw", "0", "round_robin").id == a.id  # amount 0: any usable address

    def test_region_picks_the_users_regional_pool_with_a_fallback(self, hot_seeds):
        eu1, eu2 = _pool("withdraw", ["5", "5"], region="eu")
        (asia,) = _pool("withdraw", ["5"], region="asia")
        (anywhere,) = _pool("withdraw", ["50"])

        assert [_select("withdraw", "1", "region", region="eu").id for _ in range(3)] == [eu1.id, eu2.id, eu1.id]
        assert _select("withdraw", "1", "region", region="asia").id == asia.id
        # No address of the region can pay, or the user has none: the untagged addresses first.
        assert _select("withdraw", "20", "region", region="eu").id == anywhere.id
        assert _select("withdraw", "1", "region", region="").id == anywhere.id
        assert _select("withdraw", "1", "region", region="us").id == anywhere.id
        # Nothing untagged can pay: the whole pool.
        BALANCES[anywhere.id] = Decimal(0)
        assert _select("withdraw", "1", "region", region="us").id in {eu1.id, eu2.id, asia.id}

    def test_refuses_an_unknown_strategy(self, hot_seeds):
        _pool("withdraw", ["1"])

        with pytest.raises(services.UnknownStrategy):
            _select("withdraw", "1", "random")

    def test_never_picks_a_cold_address(self, hot_seeds):
        cold = services.cold_address_add(
            chain_id="ETH", address="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", wallet_type="withdraw"
        )
        BALANCES[cold.id] = Decimal("1000")

        with pytest.raises(services.NoHotWallet):
            _select("withdraw", "1", "balance")


def _take_change(wallet_type: str = "withdraw") -> WalletAddress:
    with transaction.atomic():
        return services.change_address_take(chain_id="BTC", wallet_type=wallet_type, now=timezone.now())


@pytest.mark.django_db
class TestChangeAddress:
    def test_gives_a_fresh_change_address_of_the_pool_from_the_hot_seed_each_time(self, hot_seeds):
        (hot,) = services.hot_addresses_create(chain_id="BTC", wallet_type="withdraw")

        taken = [_take_change() for _ in range(services.CHANGE_BATCH + 2)]

        assert len({row.id for row in taken}) == len(taken)
        assert all(row.address_type == AddressType.CHANGE and row.wallet_type == "withdraw" for row in taken)
        assert all(row.key_secret_id == hot_seeds["BTC"].id and row.assign_time is not None for row in taken)
        assert [row.derivation_index for row in taken] == list(range(1, len(taken) + 1))  # after the hot address
        # The signer's key of a change address is the one its address was derived from.
        assert selectors.public_keys(address_ids=[taken[0].id])[taken[0].id][0] == taken[0].address
        assert hot.derivation_index == 0

    def test_change_addresses_are_never_picked_as_hot_addresses(self, hot_seeds):
        change = _take_change()
        with pytest.raises(services.NoHotWallet):
            with transaction.atomic():
                services.hot_wallet_select(
                    chain_id="BTC",
                    wallet_type="withdraw",
                    amount=Decimal("1"),
                    strategy="balance",
                    balances={change.id: Decimal("1000")},
                )
        assert list(selectors.hot_addresses(chain_id="BTC")) == []
        # ...but the UTXO scanner watches them with the hot ones.
        assert change.id in set(selectors.exchange_addresses_owned(chain_id="BTC").values_list("id", flat=True))


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_payouts_taking_change_addresses_at_once_get_different_ones(seeded_coins, leak_watch):
    from addresses import signer
    from addresses.tests.conftest import TEST_MNEMONIC_HOT

    signer.hd_wallet_create(chain_id="BTC", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC_HOT, label="test-only")
    services.hot_addresses_create(chain_id="BTC", wallet_type="withdraw")
    _take_change()  # the first batch exists: the others come from the pool with SKIP LOCKED
    barrier = threading.Barrier(4, timeout=30)
    got: list[int] = []

    def take() -> None:
        try:
            with transaction.atomic(durable=True):
                row = services.change_address_take(chain_id="BTC", wallet_type="withdraw", now=timezone.now())
                barrier.wait()  # every taker holds its row until all have taken one
                got.append(row.id)
        finally:
            connection.close()

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(got) == len(set(got)) == 4
