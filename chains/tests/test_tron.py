"""TRON adapter against the loopback TRON fake (chains.tron_fake) with real EVM contract execution.

Every key is a TEST-ONLY key generated here.
"""

from __future__ import annotations

import json
import time

import pytest
from tronpy import Tron
from tronpy.keys import PrivateKey, to_hex_address
from tronpy.providers import HTTPProvider

from chains.base import ChainError, SignedTx, TxRejected
from chains.devnodes import free_port
from chains.testing import tron_sign
from chains.tron import TronAdapter
from chains.tron_fake import CREATE_ACCOUNT_FEE_SUN, CREATE_NEW_ACCOUNT_FEE_SUN, ENERGY_FEE_SUN


def new_account(tron_node, trx_sun: int = 0) -> tuple[bytes, str]:
    key = PrivateKey.random()  # TEST-ONLY
    address = key.public_key.to_base58check_address()
    if trx_sun:
        tron_node.fund(address, trx_sun)
    return bytes.fromhex(key.hex()), address


def fresh_account() -> str:
    return PrivateKey.random().public_key.to_base58check_address()  # TEST-ONLY, never funded


def send(tron_adapter, tron_node, private_key, sender, to, amount, contract=None, **kwargs) -> str:
    unsigned = tron_adapter.build_transfer(
        from_address=sender, to_address=to, amount_base_units=amount, contract=contract, **kwargs
    )
    txid = tron_adapter.broadcast_irreversible(tron_sign(unsigned, private_key))
    tron_node.mine(1)
    return txid


class TestTrx:
    def test_reports_a_tronpy_signed_trx_transfer_and_keeps_balances(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 50_000_000)
        _, to = new_account(tron_node)

        txid = send(tron_adapter, tron_node, key, sender, to, 12_345_678)
        height = tron_adapter.tip_height()
        block = tron_adapter.block(height, watched={to})

        [transfer] = block.transfers
        assert (transfer.tx_hash, transfer.amount_base_units, transfer.contract) == (txid, 12_345_678, None)
        assert transfer.success is True and transfer.from_address == sender and transfer.index == -1
        assert tron_adapter.balance(to) == 12_345_678
        # A new account costs its activation and the bandwidth of creating it, burnt.
        assert (
            tron_adapter.balance(sender)
            == 50_000_000 - 12_345_678 - CREATE_ACCOUNT_FEE_SUN - CREATE_NEW_ACCOUNT_FEE_SUN
        )
        status = tron_adapter.tx_status(txid)
        assert (status.success, status.block_number, status.block_hash) == (True, height, block.hash)

    def test_a_rebroadcast_returns_the_same_txid_and_pays_once(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 20_000_000)
        _, to = new_account(tron_node, 1)
        signed = tron_sign(
            tron_adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=1_000_000), key
        )

        first = tron_adapter.broadcast_irreversible(signed)
        second = tron_adapter.broadcast_irreversible(signed)
        tron_node.mine(1)
        third = tron_adapter.broadcast_irreversible(signed)
        tron_node.mine(1)

        assert first == second == third == signed.tx_hash
        assert tron_adapter.balance(to) == 1_000_001

    def test_tronpy_online_client_works_against_the_fake(self, tron_node):
        key, sender = new_account(tron_node, 5_000_000)
        _, to = new_account(tron_node)
        client = Tron(HTTPProvider(tron_node.url))

        result = client.trx.transfer(sender, to, 1_000_000).build().sign(PrivateKey(key)).broadcast()
        tron_node.mine(1)

        assert result["result"] is True
        assert client.get_account_balance(to) == 1  # TRX, as tronpy reports it

    def test_burns_trx_for_bandwidth_once_the_free_allowance_is_used(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 50_000_000)
        _, to = new_account(tron_node, 1)  # existing account: no creation fee

        fees = []
        for _ in range(3):
            txid = send(tron_adapter, tron_node, key, sender, to, 1_000_000)
            fees.append(tron_node.post("/wallet/gettransactioninfobyid", {"value": txid}).get("fee", 0))

        assert fees[0] == 0 and fees[-1] > 0 and fees[-1] % 1000 == 0  # 1000 sun per byte
        assert tron_adapter.balance(sender) == 50_000_000 - 3_000_000 - sum(fees)

    def test_blocks_read_a_range_as_one_chain(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 10_000_000)
        _, to = new_account(tron_node)
        send(tron_adapter, tron_node, key, sender, to, 2_000_000)
        tron_node.mine(1)
        tip = tron_adapter.tip_height()

        blocks = tron_adapter.blocks(tip - 2, tip, watched={to})

        assert [b.parent_hash for b in blocks[1:]] == [b.hash for b in blocks[:-1]]
        assert [t.amount_base_units for b in blocks for t in b.transfers] == [2_000_000]

    def test_fee_estimate_and_unknown_transaction(self, tron_adapter):
        assert tron_adapter.fee_estimate() == 1000
        assert tron_adapter.tx_status("ab" * 32).found is False


class TestTrc20:
    def test_reports_a_trc20_transfer_executed_on_the_evm(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 100_000_000)
        usdt = tron_node.trc20_deploy(owner=sender, supply=1_000_000_000)
        _, to = new_account(tron_node)

        txid = send(tron_adapter, tron_node, key, sender, to, 250_000_000, contract=usdt)
        [transfer] = tron_adapter.block(tron_adapter.tip_height(), watched={to}).transfers

        assert (transfer.tx_hash, transfer.index, transfer.contract) == (txid, 0, usdt)
        assert transfer.amount_base_units == 250_000_000 and transfer.success is True
        assert transfer.from_address == sender
        assert tron_adapter.balance(to, contract=usdt) == 250_000_000
        assert tron_adapter.balance(sender, contract=usdt) == 750_000_000
        burnt = 100_000_000 - tron_adapter.balance(sender)
        assert burnt > 0 and burnt % ENERGY_FEE_SUN == 0  # energy paid in TRX

    def test_reports_a_reverted_trc20_transfer_as_failed(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 100_000_000)
        token = tron_node.trc20_deploy(contract="BlockableToken", owner=sender, supply=10**9)
        blockable = tron_node.evm.contract("0x" + to_hex_address(token)[2:], "BlockableToken")
        tron_node.evm.transact(blockable.functions.setTransfersBlocked(True))
        _, to = new_account(tron_node)

        txid = send(tron_adapter, tron_node, key, sender, to, 5_000_000, contract=token)
        [transfer] = tron_adapter.block(tron_adapter.tip_height(), watched={to}).transfers

        assert transfer.tx_hash == txid
        assert transfer.success is False
        assert (transfer.index, transfer.contract, transfer.amount_base_units) == (-1, token, 5_000_000)
        assert tron_adapter.balance(to, contract=token) == 0
        assert tron_adapter.tx_status(txid).success is False

    def test_estimates_the_energy_a_transfer_burns_and_the_fee_of_a_new_account(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 100_000_000)
        token = tron_node.trc20_deploy(owner=sender, supply=10**9)
        _, to = new_account(tron_node)

        energy = tron_adapter.estimate_energy(owner=sender, contract=token, to_address=to, amount_base_units=1_000)
        too_much = tron_adapter.estimate_energy(owner=sender, contract=token, to_address=to, amount_base_units=10**10)
        txid = send(
            tron_adapter, tron_node, key, sender, to, 1_000, contract=token, fee_limit_sun=energy * ENERGY_FEE_SUN
        )
        info = tron_node.post("/wallet/gettransactioninfobyid", {"value": txid})
        activation = tron_adapter.transfer_fee(
            tron_adapter.build_transfer(from_address=sender, to_address=fresh_account(), amount_base_units=1)
        )

        assert info["receipt"]["result"] == "SUCCESS" and 0 < info["receipt"]["energy_usage_total"] <= energy
        assert too_much is None  # the sender lacks the tokens: the call would fail
        assert activation == (
            CREATE_NEW_ACCOUNT_FEE_SUN + CREATE_ACCOUNT_FEE_SUN,
            "the activation of the new recipient account",
        )

    def test_runs_out_of_energy_under_a_tiny_fee_limit(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 100_000_000)
        _, to = new_account(tron_node)
        token = tron_node.trc20_deploy(owner=sender, supply=10**9)

        txid = send(tron_adapter, tron_node, key, sender, to, 1_000, contract=token, fee_limit_sun=ENERGY_FEE_SUN * 10)
        info = tron_node.post("/wallet/gettransactioninfobyid", {"value": txid})

        assert info["receipt"]["result"] == "OUT_OF_ENERGY"
        [transfer] = tron_adapter.block(tron_adapter.tip_height(), watched={to}).transfers
        assert transfer.success is False
        assert tron_adapter.balance(to, contract=token) == 0

    def test_a_look_alike_token_is_reported_under_its_own_contract(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 100_000_000)
        fake = tron_node.trc20_deploy(name="Tether USD", symbol="USDT", owner=sender, supply=10**9)
        _, to = new_account(tron_node)

        send(tron_adapter, tron_node, key, sender, to, 1_000_000, contract=fake)
        [transfer] = tron_adapter.block(tron_adapter.tip_height(), watched={to}).transfers

        assert transfer.contract == fake != tron_node.contracts["USDT"]


class TestSignatures:
    def test_refuses_a_transaction_signed_by_another_key(self, tron_node, tron_adapter):
        _, sender = new_account(tron_node, 10_000_000)
        thief_key, _ = new_account(tron_node)
        _, to = new_account(tron_node)
        unsigned = tron_adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=1_000_000)

        with pytest.raises(TxRejected, match="SIGERROR"):
            tron_adapter.broadcast_irreversible(tron_sign(unsigned, thief_key))
        assert tron_adapter.balance(sender) == 10_000_000

    def test_refuses_raw_data_changed_after_signing(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 10_000_000)
        _, to = new_account(tron_node)
        signed = tron_sign(
            tron_adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=1_000_000), key
        )
        tx = json.loads(signed.raw)
        tx["raw_data"]["contract"][0]["parameter"]["value"]["amount"] = 9_000_000

        with pytest.raises(TxRejected, match="SIGERROR"):
            tron_adapter.broadcast_irreversible(SignedTx(tx_hash=signed.tx_hash, raw=json.dumps(tx)))

    def test_refuses_a_transfer_beyond_the_balance(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 1_000_000)
        _, to = new_account(tron_node)
        unsigned = tron_adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=2_000_000)

        with pytest.raises(TxRejected, match="CONTRACT_VALIDATE_ERROR"):
            tron_adapter.broadcast_irreversible(tron_sign(unsigned, key))


class TestReorg:
    def test_replacing_blocks_changes_their_hash_and_drops_their_transfers(self, tron_node, tron_adapter):
        key, sender = new_account(tron_node, 30_000_000)
        _, to = new_account(tron_node)
        send(tron_adapter, tron_node, key, sender, to, 7_000_000)
        height = tron_adapter.tip_height()
        old_hash = tron_adapter.block_hash(height)
        tron_node.mine(1)

        tron_node.reorg(2)

        assert tron_adapter.tip_height() == height + 1
        assert tron_adapter.block_hash(height) != old_hash
        assert tron_adapter.block(height, watched={to}).transfers == []
        assert tron_adapter.block(height + 1).parent_hash == tron_adapter.block_hash(height)
        assert tron_adapter.balance(to) == 0
        assert tron_adapter.balance(sender) == 30_000_000

    def test_a_transaction_the_block_at_its_indexed_height_does_not_hold_is_not_reported_mined(
        self, tron_node, tron_adapter
    ):
        key, sender = new_account(tron_node, 30_000_000)
        _, to = new_account(tron_node)
        txid = send(tron_adapter, tron_node, key, sender, to, 7_000_000)
        height = tron_adapter.tip_height()
        assert tron_adapter.tx_status(txid).block_number == height

        # The block is replaced, but the node's transaction index still names the old one.
        tron_node.reorg(1, stale_index=True)
        status = tron_adapter.tx_status(txid)

        assert tron_node.post("/wallet/gettransactioninfobyid", {"value": txid})["blockNumber"] == height
        assert (status.found, status.block_number, status.block_hash) == (True, None, None)


class TestNodeDown:
    def test_raises_chain_error_quickly(self):
        adapter = TronAdapter(url=f"http://127.0.0.1:{free_port()}/", connect_timeout=0.5, read_timeout=1)
        started = time.monotonic()

        with pytest.raises(ChainError):
            adapter.tip_height()
        with pytest.raises(ChainError):
            adapter.block(1)

        assert time.monotonic() - started < 3

    def test_a_missing_block_is_a_chain_error(self, tron_adapter):
        with pytest.raises(ChainError):
            tron_adapter.block(tron_adapter.tip_height() + 100)
