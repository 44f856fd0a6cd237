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
