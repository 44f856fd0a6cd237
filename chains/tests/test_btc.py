"""BTC adapter against a real bcoin regtest full node; every key is a TEST-ONLY throwaway key."""

from __future__ import annotations

import time

import pytest

from chains.base import ChainError, SignedTx, TxRejected
from chains.btc import BtcAdapter, address_to_script
from chains.codecs import segwit_encode
from chains.devnodes import free_port
from chains.testing import btc_coinbase_utxo, btc_new_key, btc_sign


def regtest_address(script: str, hrp: str = "bcrt") -> str:
    return segwit_encode(hrp, 0, bytes.fromhex(script[4:]))


# Amounts a float would turn into the wrong number of satoshis (0.29 BTC * 1e8 = 28999999.99...).
AMOUNTS = [100_000_001, 29_000_000, 2_112_345_678]


@pytest.fixture(scope="module")
def paid(btc_node, btc_adapter):
    """One segwit transaction paying three P2WPKH outputs, mined; (txid, scripts, height)."""
    scripts = [btc_new_key()[1] for _ in AMOUNTS]
    addresses = [regtest_address(s) for s in scripts]
    unsigned = btc_adapter.build_transfer(
        from_address=btc_node.miner_address,
        to_address=addresses[0],
        amount_base_units=AMOUNTS[0],
        outputs=list(zip(addresses[1:], AMOUNTS[1:], strict=True)),
        utxos=[btc_coinbase_utxo(btc_node, 1)],
        fee_rate_sat_vb=3,
    )
    signed = btc_sign(unsigned, btc_node.miner_private_key)
    txid = btc_adapter.broadcast_irreversible(signed)
    btc_node.mine(1)
    return txid, scripts, btc_adapter.tip_height()


class TestBlock:
    def test_finds_every_output_of_one_transaction_by_script_with_exact_satoshis(self, btc_adapter, paid):
        txid, scripts, height = paid

        block = btc_adapter.block(height, watched=set(scripts))

        found = sorted((t.match_key, t.amount_base_units, t.index) for t in block.transfers)
        assert found == sorted(zip(scripts, AMOUNTS, range(3), strict=True))
        assert all(t.tx_hash == txid and t.success is True and t.contract is None for t in block.transfers)

    def test_reports_all_outputs_without_watched_but_no_coinbase(self, btc_node, btc_adapter, paid):
        txid, scripts, height = paid

        block = btc_adapter.block(height)

        assert {t.match_key for t in block.transfers} == {*scripts, btc_node.miner_script}  # + change
        assert {t.tx_hash for t in block.transfers} == {txid}
        assert block.parent_hash == btc_adapter.block_hash(height - 1)
        assert block.hash == btc_adapter.block_hash(height)

    def test_lists_every_input_of_the_block_even_with_a_watch_list_that_matches_nothing(
        self, btc_node, btc_adapter, paid
    ):
        txid, _, height = paid
        coinbase = btc_coinbase_utxo(btc_node, 1)

        block = btc_adapter.block(height, watched=set())

        assert block.transfers == []
        assert [tuple(s) for s in block.spends] == [(coinbase.txid, 0, txid)]  # the coinbase's own input is not one
        assert btc_adapter.block(height - 1).spends == []  # a block with only its coinbase

    def test_blocks_read_a_range_as_one_chain(self, btc_adapter, paid):
        _, scripts, height = paid

        blocks = btc_adapter.blocks(height - 2, height, watched=set(scripts))

        assert [b.number for b in blocks] == [height - 2, height - 1, height]
        assert blocks[2].parent_hash == blocks[1].hash
        assert sum(t.amount_base_units for t in blocks[2].transfers) == sum(AMOUNTS)

    def test_speaks_bcoins_getblock_form(self, btc_adapter, paid):
        btc_adapter.block(paid[2])

        assert btc_adapter._getblock_args == (True, True)

    def test_tx_status_reports_the_mined_block(self, btc_adapter, paid):
        txid, _, height = paid

        status = btc_adapter.tx_status(txid)

        assert status.found is True and status.success is True
        assert (status.block_number, status.block_hash) == (height, btc_adapter.block_hash(height))


class TestReorg:
    def test_invalidateblock_changes_the_block_hash_and_drops_the_deposit(self, btc_node, btc_adapter):
        _, script = btc_new_key()
        unsigned = btc_adapter.build_transfer(
            from_address=btc_node.miner_address,
            to_address=regtest_address(script, "rb"),
            amount_base_units=50_000_000,
            utxos=[btc_coinbase_utxo(btc_node, 2)],
            fee_rate_sat_vb=2,
        )
        btc_adapter.broadcast_irreversible(btc_sign(unsigned, btc_node.miner_private_key))
        btc_node.mine(1)
        height = btc_adapter.tip_height()
        old_hash = btc_adapter.block_hash(height)
        assert [t.amount_base_units for t in btc_adapter.block(height, watched={script}).transfers] == [50_000_000]

        btc_node.rpc("invalidateblock", old_hash)
        btc_node.mine(2)

        assert btc_adapter.tip_height() == height + 1
        assert btc_adapter.block_hash(height) != old_hash
        assert btc_adapter.block(height, watched={script}).transfers == []


class TestBroadcast:
    def test_a_transaction_with_a_bad_signature_is_detected_as_rejected(self, btc_node, btc_adapter):
        _, script = btc_new_key()
        unsigned = btc_adapter.build_transfer(
            from_address=btc_node.miner_address,
            to_address=regtest_address(script),
            amount_base_units=10_000_000,
            utxos=[btc_coinbase_utxo(btc_node, 3)],
            fee_rate_sat_vb=2,
        )
        signed = btc_sign(unsigned, btc_node.miner_private_key)
        # Flip one byte inside the DER signature of the witness: the node answers the txid anyway.
        der = max(signed.raw.rfind("30440220"), signed.raw.rfind("30450221"))
        witness_at = der + 20
        tampered = signed.raw[:witness_at] + ("00" if signed.raw[witness_at : witness_at + 2] != "00" else "01")
        tampered += signed.raw[witness_at + 2 :]
        fast = BtcAdapter(url=btc_node.url, mempool_wait=0.5)

        with pytest.raises(TxRejected):
            fast.broadcast_irreversible(SignedTx(tx_hash=signed.tx_hash, raw=tampered))
        assert btc_adapter.tx_status(signed.tx_hash).found is False

    def test_fee_estimate_falls_back_on_a_quiet_chain(self, btc_adapter):
        assert btc_adapter.fee_estimate() == 2


class TestAddresses:
    def test_match_key_is_the_script_for_either_regtest_prefix(self, btc_adapter):
        _, script = btc_new_key()

        assert btc_adapter.match_key(regtest_address(script, "bcrt")) == script
        assert btc_adapter.match_key(regtest_address(script, "rb")) == script

    def test_refuses_an_address_of_another_network_or_a_bad_checksum(self, btc_adapter):
        _, script = btc_new_key()
        good = regtest_address(script)

        with pytest.raises(ValueError):
            btc_adapter.match_key(regtest_address(script, "bc"))
        with pytest.raises(ValueError):
            btc_adapter.match_key(good[:-1] + ("q" if good[-1] != "q" else "p"))

    def test_decodes_base58_and_mainnet_segwit_addresses(self):
        assert address_to_script("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", "mainnet") == (
            "76a91477bff20c60e522dfaa3350c39b030a5d004e839a88ac"
        )
        assert address_to_script("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "mainnet") == (
            "0014751e76e8199196d454941c45d1b3a323f1433bd6"
        )


class TestNodeDown:
    def test_raises_chain_error_quickly(self):
        adapter = BtcAdapter(url=f"http://u:p@127.0.0.1:{free_port()}/", connect_timeout=0.5, read_timeout=1)
        started = time.monotonic()

        with pytest.raises(ChainError):
            adapter.tip_height()
        with pytest.raises(ChainError):
            adapter.block(1)

        assert time.monotonic() - started < 3

    def test_a_wrong_api_key_is_a_chain_error(self, btc_node):
        adapter = BtcAdapter(url=f"http://wallet:wrong@127.0.0.1:{btc_node.port}/")

        with pytest.raises(ChainError):
            adapter.tip_height()
