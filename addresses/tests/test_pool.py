"""The deposit address pool: batches, resumption, the management command and the beat task."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from eth_account import Account

from addresses import selectors, services, tasks
from addresses.models import AddressType, KeySecret, WalletAddress
from addresses.tests.conftest import TEST_MNEMONIC_DEPOSIT

Account.enable_unaudited_hdwallet_features()


@pytest.mark.django_db
class TestPoolFill:
    def test_adds_unassigned_deposit_rows_with_their_paths(self, deposit_seeds):
        added = services.address_pool_fill(chain_id="ETH", count=25, batch_size=10)

        rows = list(WalletAddress.objects.filter(chain_id="ETH").order_by("derivation_index"))
        assert added == 25 and len(rows) == 25
        assert [r.derivation_index for r in rows] == list(range(25))
        assert all(r.user_id is None and r.address_type == AddressType.USER_DEPOSIT for r in rows)
        assert all(r.coin_id == "ETH" and r.key_secret_id == deposit_seeds["ETH"].id for r in rows)
        assert rows[7].derivation_path == "m/44'/60'/0'/0/7"
        expected = Account.from_mnemonic(TEST_MNEMONIC_DEPOSIT, account_path="m/44'/60'/0'/0/7").address
        assert rows[7].address == expected
        assert selectors.address_pool_available(chain_id="ETH") == 25

    def test_a_second_run_continues_after_the_highest_index(self, deposit_seeds):
        services.address_pool_fill(chain_id="TRON", count=5)

        services.address_pool_fill(chain_id="TRON", count=5)

        indexes = sorted(WalletAddress.objects.filter(chain_id="TRON").values_list("derivation_index", flat=True))
        assert indexes == list(range(10))
        assert KeySecret.objects.get(id=deposit_seeds["TRON"].id).next_index == 10

    def test_an_interrupted_fill_keeps_its_committed_batches(self, deposit_seeds):
        calls = []

        def stop_after_two_batches(step: int) -> None:
            calls.append(step)
            if len(calls) == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            services.address_pool_fill(chain_id="BTC", count=50, batch_size=10, progress=stop_after_two_batches)
        services.address_pool_fill(chain_id="BTC", count=30, batch_size=10)

        indexes = sorted(WalletAddress.objects.filter(chain_id="BTC").values_list("derivation_index", flat=True))
        assert indexes == list(range(50))

    def test_pool_rows_equal_the_rows_the_orm_path_writes(self, deposit_seeds):
        services.address_pool_fill(chain_id="ETH", count=1)
        (orm_row,) = services.addresses_derive_next(chain_id="ETH", purpose=AddressType.USER_DEPOSIT, count=1)

        pool_row = WalletAddress.objects.get(derivation_index=0, chain_id="ETH")
        orm_row.refresh_from_db()
        skip = {"id", "address", "derivation_index", "derivation_path", "create_time", "update_time"}
        fields = [f.attname for f in WalletAddress._meta.concrete_fields if f.attname not in skip]
        assert {f: getattr(pool_row, f) for f in fields} == {f: getattr(orm_row, f) for f in fields}
        assert pool_row.create_time is not None and abs(pool_row.create_time - orm_row.create_time).total_seconds() < 60
        assert orm_row.derivation_index == 1

    def test_a_batch_whose_indexes_were_taken_meanwhile_writes_nothing(self, deposit_seeds):
        services.address_pool_fill(chain_id="ETH", count=4)

        with pytest.raises(services.PoolConflict):
            services._pool_batch_store(secret_id=deposit_seeds["ETH"].id, start=2, count=1, derived=[(2, "0xdup")])

        assert WalletAddress.objects.filter(chain_id="ETH").count() == 4

    def test_refuses_a_chain_without_a_deposit_seed(self, db):
        with pytest.raises(services.NoHdWallet):
            services.address_pool_fill(chain_id="ETH", count=1)

    def test_the_command_fills_with_a_progress_bar(self, deposit_seeds):
        out, err = io.StringIO(), io.StringIO()

        call_command(
            "fill_address_pool", "--chain", "ETH", "--count", "30", "--batch-size", "8", stdout=out, stderr=err
        )

        assert "Added 30 ETH deposit addresses; 30 unassigned." in out.getvalue()
        assert "30/30" in err.getvalue()  # tqdm's bar

    def test_the_command_says_what_is_missing(self, db):
        with pytest.raises(CommandError, match="no HD seed"):
            call_command("fill_address_pool", "--chain", "ETH", "--count", "3", "--no-progress")


@pytest.mark.django_db
class TestPoolTopUpTask:
    def test_tops_up_below_the_minimum_only(self, deposit_seeds, settings):
        settings.ADDRESS_POOL_MIN = 10
        settings.ADDRESS_POOL_BATCH = 15

        tasks.address_pool_top_up.apply(kwargs={"chain_id": "ETH"})
        first = selectors.address_pool_available(chain_id="ETH")
        tasks.address_pool_top_up.apply(kwargs={"chain_id": "ETH"})  # 15 >= 10: nothing to do

        assert first == 15
        assert selectors.address_pool_available(chain_id="ETH") == 15

    def test_visits_every_chain_and_skips_one_without_a_seed(self, deposit_seeds, settings):
        settings.ADDRESS_POOL_MIN = 3
        settings.ADDRESS_POOL_BATCH = 4
        KeySecret.objects.filter(chain_id="BTC").delete()

        tasks.address_pool_top_up.apply()

        assert [selectors.address_pool_available(chain_id=c) for c in ("BTC", "ETH", "TRON")] == [0, 4, 4]


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_the_pipelined_fill_on_mariadb_writes_every_batch_once(deposit_seeds):
    steps = []

    added = services.address_pool_fill(chain_id="TRON", count=25, batch_size=10, pipelined=True, progress=steps.append)

    indexes = sorted(WalletAddress.objects.filter(chain_id="TRON").values_list("derivation_index", flat=True))
    assert added == 25 and indexes == list(range(25)) and sorted(steps) == [5, 10, 10]
    assert KeySecret.objects.get(chain_id="TRON").next_index == 25
    services.address_pool_fill(chain_id="TRON", count=5, pipelined=True)
    assert WalletAddress.objects.filter(chain_id="TRON").count() == 30
