"""Coin selection, locking, pending spends and release on the UTXO set (MariaDB rows, no node)."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, transaction

from addresses.models import AddressType
from chains.btc import DUST_SATS, BtcAdapter, p2wpkh_vsize
from utxos import selectors as utxos_selectors
from utxos import services as utxos_services
from utxos.models import BtcUtxo
from utxos.tests.conftest import external_address, output, own_address

BTC = 100_000_000
TIP = 200  # outputs at height 100 have 101 confirmations


def select(**kwargs):
    arguments = {
        "wallet_type": "default",
        "payout_ref": "W1",
        "fee_rate_sat_vb": 2,
        "tip_height": TIP,
        **kwargs,
    }
    with transaction.atomic():
        return utxos_services.utxos_select_lock(**arguments)


@pytest.fixture
def hot(db):
    return own_address()


class TestPolicy:
    def test_takes_the_smallest_output_that_pays_alone(self, hot, now):
        rows = [output(hot, value) for value in (BTC // 10, BTC // 2, 2 * BTC, 5 * BTC)]

        selection = select(amount_sats=BTC * 4 // 10, now=now)

        assert [u.id for u in selection.utxos] == [rows[1].id]
        assert BtcUtxo.objects.get(id=rows[1].id).locked_by == "W1"
        assert BtcUtxo.objects.filter(locked_by__isnull=False).count() == 1

    def test_takes_the_largest_first_when_no_output_pays_alone(self, hot, now):
        rows = [output(hot, value) for value in (BTC // 10, BTC // 2, 2 * BTC, 5 * BTC)]

        selection = select(amount_sats=6 * BTC, now=now)

        assert [u.id for u in selection.utxos] == [rows[3].id, rows[2].id]
        assert selection.total_sats == 7 * BTC

    def test_spends_only_free_confirmed_outputs_of_the_pools_hot_and_change_addresses(self, hot, now):
        change = own_address(kind=AddressType.CHANGE)
        deposit = own_address(kind=AddressType.USER_DEPOSIT)
        other_pool = own_address(wallet_type="vip")
        cold = own_address(kind=AddressType.COLD)
        output(hot, 9 * BTC, height=TIP)  # one confirmation: fewer than required below
        output(hot, 9 * BTC, locked_by="W0")
        output(hot, 9 * BTC, spent_txid="ab" * 32, spent_height=150, spent_hash="cd" * 32)
        output(hot, 9 * BTC, orphaned=True)
        for address in (deposit, other_pool, cold):
            output(address, 9 * BTC)
        usable = [output(hot, BTC), output(change, BTC)]

        selection = select(amount_sats=BTC * 3 // 2, now=now, min_confirmations=2)

        assert sorted(u.id for u in selection.utxos) == sorted(r.id for r in usable)
        with pytest.raises(utxos_services.UtxoShortfall):
            select(amount_sats=BTC, payout_ref="W2", now=now, min_confirmations=2)

    def test_prices_fee_and_change_exactly_as_the_transaction_builder_does(self, hot, now):
        output(hot, BTC)
        output(hot, BTC // 4)
        adapter = BtcAdapter(url="http://wallet:unused@127.0.0.1:9/")  # building needs no node here
        amount = BTC * 11 // 10

        selection = select(amount_sats=amount, now=now, fee_rate_sat_vb=7, outputs=2)
        tx = adapter.build_transfer(
            from_address=hot.address,
            to_address=external_address(),
            amount_base_units=amount - 10_000,
            outputs=[(external_address(), 10_000)],
            utxos=selection.inputs(),
            change_address=hot.address,
            fee_rate_sat_vb=7,
        ).payload

        assert len(tx.inputs) == len(selection.utxos) == 2
        assert tx.fee == selection.fee_sats == p2wpkh_vsize(2, 3) * 7
        assert [o.value for o in tx.outputs][-1] == selection.change_sats
        assert selection.total_sats == amount + selection.fee_sats + selection.change_sats

    def test_leaves_change_at_or_below_dust_to_the_fee(self, hot, now):
        fee = p2wpkh_vsize(1, 2) * 2
        output(hot, BTC + fee + DUST_SATS)

        selection = select(amount_sats=BTC, now=now)

        assert (selection.change_sats, selection.fee_sats) == (0, fee + DUST_SATS)

    def test_gives_every_input_the_key_and_address_that_sign_it(self, hot, now):
        row = output(hot, BTC)

        (locked,) = select(amount_sats=BTC // 2, now=now).utxos

        assert (locked.address, locked.public_key_hex, locked.script_hex) == (
            hot.address,
            hot.public_key,
            row.script_hex,
        )


class TestRefusals:
    def test_a_shortfall_raises_and_locks_nothing(self, hot, now):
        output(hot, BTC)
        output(hot, BTC)

        with pytest.raises(utxos_services.UtxoShortfall) as caught:
            select(amount_sats=2 * BTC, now=now)

        assert caught.value.free_sats == 2 * BTC
        assert caught.value.needed_sats > 2 * BTC
        assert not BtcUtxo.objects.filter(locked_by__isnull=False).exists()

    def test_more_inputs_than_allowed_is_a_shortfall(self, hot, now):
        for _ in range(4):
            output(hot, BTC)

        with pytest.raises(utxos_services.UtxoShortfall):
            select(amount_sats=3 * BTC, now=now, max_inputs=3)

    def test_a_reference_that_already_holds_outputs_is_refused(self, hot, now):
        output(hot, BTC)
        output(hot, BTC)
        select(amount_sats=BTC // 2, now=now)

        with pytest.raises(utxos_services.UtxoConflict):
            select(amount_sats=BTC // 2, now=now)


class TestPendingAndRelease:
    def test_records_the_signed_spend_then_a_release_hands_the_outputs_back(self, hot, now):
        output(hot, BTC)
        selection = select(amount_sats=BTC // 2, now=now)
        with transaction.atomic():
            assert utxos_services.utxos_spend_pending(payout_ref="W1", txid="aa" * 32) == 1
        assert utxos_selectors.utxo_balance(tip_height=TIP, wallet_type="default").locked_sats == BTC

        with transaction.atomic():
            released = utxos_services.utxos_release(payout_ref="W1")

        row = BtcUtxo.objects.get(id=selection.utxos[0].id)
        assert released == 1
        assert (row.locked_by, row.lock_time, row.pending_txid) == (None, None, None)
        assert select(amount_sats=BTC // 2, payout_ref="W2", now=now).utxos[0].id == row.id

    def test_a_mined_spend_cannot_be_released(self, hot, now):
        output(hot, BTC)
        select(amount_sats=BTC // 2, now=now)
        with transaction.atomic():
            utxos_services.utxos_spend_pending(payout_ref="W1", txid="aa" * 32)
        BtcUtxo.objects.update(spent_txid="aa" * 32, spent_height=TIP, spent_hash="bb" * 32)

        with pytest.raises(utxos_services.UtxoConflict), transaction.atomic():
            utxos_services.utxos_release(payout_ref="W1")

        assert BtcUtxo.objects.get().locked_by == "W1"

    def test_a_pending_spend_of_an_output_spent_by_another_transaction_is_refused(self, hot, now):
        output(hot, BTC)
        select(amount_sats=BTC // 2, now=now)
        BtcUtxo.objects.update(spent_txid="cc" * 32, spent_height=TIP, spent_hash="bb" * 32)

        with pytest.raises(utxos_services.UtxoConflict), transaction.atomic():
            utxos_services.utxos_spend_pending(payout_ref="W1", txid="aa" * 32)


class TestBalances:
    def test_splits_what_addresses_hold_into_spendable_unconfirmed_and_locked(self, hot, now):
        change = own_address(kind=AddressType.CHANGE)
        deposit = own_address(kind=AddressType.USER_DEPOSIT)
        output(hot, 5 * BTC)
        output(hot, 3 * BTC, height=TIP)  # 1 confirmation
        output(change, 2 * BTC, locked_by="W9", pending_txid="aa" * 32)
        output(hot, 7 * BTC, spent_txid="ab" * 32, spent_height=150, spent_hash="cd" * 32)
        output(hot, 11 * BTC, orphaned=True)
        output(deposit, BTC)

        pool = utxos_selectors.utxo_balance(
            tip_height=TIP, wallet_type="default", kinds=utxos_selectors.HOT_POOL, min_confirmations=2
        )
        one = utxos_selectors.utxo_balance(tip_height=TIP, address_id=hot.id, min_confirmations=2)
        holdings = utxos_selectors.utxo_holdings(tip_height=TIP, min_confirmations=2)

        assert (pool.spendable_sats, pool.unconfirmed_sats, pool.locked_sats, pool.total_sats) == (
            5 * BTC,
            3 * BTC,
            2 * BTC,
            10 * BTC,
        )
        assert (one.total_sats, one.outputs) == (8 * BTC, 2)
        assert {kind: b.total_sats for kind, b in holdings.items()} == {
            AddressType.HOT: 8 * BTC,
            AddressType.CHANGE: 2 * BTC,
            AddressType.USER_DEPOSIT: BTC,
        }


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
class TestRacingPayers:
    PAYERS = 4

    def _race(self, now, amount: int) -> tuple[dict[str, set[int]], dict[str, BaseException]]:
        """Every payer selects at once and holds its locks until every payer has selected."""
        start = threading.Barrier(self.PAYERS)
        selected = threading.Barrier(self.PAYERS, timeout=30)
        got: dict[str, set[int]] = {}
        failed: dict[str, BaseException] = {}

        def pay(ref: str) -> None:
            try:
                start.wait()
                try:
                    with transaction.atomic(durable=True):
                        selection = utxos_services.utxos_select_lock(
                            wallet_type="default",
                            amount_sats=amount,
                            payout_ref=ref,
                            fee_rate_sat_vb=2,
                            tip_height=TIP,
                            now=now,
                        )
                        got[ref] = {u.id for u in selection.utxos}
                        selected.wait()  # a payer that waited for another's lock would never get here
                except utxos_services.UtxoShortfall as exc:
                    failed[ref] = exc
                    selected.wait()
            finally:
                connection.close()

        threads = [threading.Thread(target=pay, args=(f"P{i}",)) for i in range(self.PAYERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        return got, failed

    def test_payers_selecting_at_once_never_get_the_same_output(self, now):
        hot = own_address()
        for _ in range(2 * self.PAYERS):
            output(hot, BTC)

        got, failed = self._race(now, amount=BTC * 3 // 2)  # two outputs each

        assert failed == {}
        assert sorted(len(ids) for ids in got.values()) == [2] * self.PAYERS
        assert len(set().union(*got.values())) == 2 * self.PAYERS  # disjoint
        assert {r.id: r.locked_by for r in BtcUtxo.objects.all()} == {
            row_id: ref for ref, ids in got.items() for row_id in ids
        }

    def test_payers_beyond_what_the_pool_holds_get_a_shortfall_not_a_shared_output(self, now):
        hot = own_address()
        for _ in range(self.PAYERS - 1):
            output(hot, BTC)

        got, failed = self._race(now, amount=BTC // 2)

        assert len(got) == self.PAYERS - 1 and len(failed) == 1
        assert len(set().union(*got.values())) == self.PAYERS - 1
