"""EVM adapter against a real ganache node (chains.testing fixtures); every key is TEST-ONLY."""

from __future__ import annotations

import time

import pytest
from eth_account import Account
from web3 import Web3

from chains.base import ChainError, NonceUsed, SignedTx, TxRejected
from chains.devnodes import free_port
from chains.evm import EvmAdapter


def fresh_address() -> str:
    return Account.create().address  # a throwaway TEST-ONLY key


def send_eth(evm_node, to: str, wei: int, *, gas: int = 21_000) -> dict:
    return evm_node.send_tx({"to": to, "value": wei, "gas": gas})


def send_usdt(evm_node, to: str, amount: int, token: str | None = None) -> dict:
    token = token or evm_node.contracts["USDT"]
    return evm_node.transact(evm_node.contract(token).functions.transfer(to, amount))


class TestBlockTransfers:
    def test_reports_a_native_eth_transfer_with_its_exact_amount(self, evm_node, evm_adapter):
        to = fresh_address()

        receipt = send_eth(evm_node, to, 1_234_567_890_123_456_789)
        block = evm_adapter.block(receipt["blockNumber"])

        [transfer] = [t for t in block.transfers if t.match_key == to.lower()]
        assert transfer.amount_base_units == 1_234_567_890_123_456_789
        assert transfer.contract is None
        assert transfer.index == -1
        assert transfer.success is True
        assert transfer.tx_hash == "0x" + receipt["transactionHash"].hex().removeprefix("0x")
        assert transfer.from_address == evm_node.accounts[0].address.lower()
        assert block.hash == evm_adapter.block_hash(receipt["blockNumber"])
        assert block.parent_hash == evm_adapter.block_hash(receipt["blockNumber"] - 1)

    def test_reports_an_erc20_transfer_with_its_contract_and_log_index(self, evm_node, evm_adapter):
        to = fresh_address()

        receipt = send_usdt(evm_node, to, 25_000_000)
        block = evm_adapter.block(receipt["blockNumber"], watched={to.lower()})

        [transfer] = block.transfers
        assert transfer.contract == evm_node.contracts["USDT"].lower()
        assert transfer.amount_base_units == 25_000_000
        assert transfer.index == receipt["logs"][0]["logIndex"]
        assert transfer.success is True
        assert evm_adapter.balance(to, contract=evm_node.contracts["USDT"]) == 25_000_000

    def test_reports_every_transfer_log_of_a_batch_transaction(self, evm_node, evm_adapter):
        usdt = evm_node.contract(evm_node.contracts["USDT"])
        batch = evm_node.deploy("BatchSender")
        evm_node.transact(usdt.functions.approve(batch, 2**256 - 1))
        recipients = [fresh_address() for _ in range(3)]
        amounts = [1_000_001, 2_000_002, 3_000_003]

        receipt = evm_node.transact(
            evm_node.contract(batch, "BatchSender").functions.send(usdt.address, recipients, amounts), gas=500_000
        )
        block = evm_adapter.block(receipt["blockNumber"], watched={r.lower() for r in recipients})

        found = {(t.match_key, t.amount_base_units) for t in block.transfers}
        assert found == {(r.lower(), a) for r, a in zip(recipients, amounts, strict=True)}
        assert len({t.index for t in block.transfers}) == 3
        assert {t.tx_hash for t in block.transfers} == {"0x" + receipt["transactionHash"].hex().removeprefix("0x")}
        assert all(t.contract == usdt.address.lower() and t.success for t in block.transfers)

    def test_reports_a_reverted_token_transfer_as_failed(self, evm_node, evm_adapter):
        token = evm_node.token_deploy(contract="BlockableToken")
        contract = evm_node.contract(token, "BlockableToken")
        evm_node.transact(contract.functions.mint(evm_node.accounts[0].address, 10**12))
        evm_node.transact(contract.functions.setTransfersBlocked(True))
        to = fresh_address()

        receipt = evm_node.transact(contract.functions.transfer(to, 5_000_000), gas=100_000)
        block = evm_adapter.block(receipt["blockNumber"], watched={to.lower()})

        assert receipt["status"] == 0
        [transfer] = block.transfers
        assert transfer.success is False
        assert transfer.contract == token.lower()
        assert transfer.amount_base_units == 5_000_000
        assert transfer.index == -1
        assert evm_adapter.balance(to, contract=token) == 0

    def test_reports_a_look_alike_token_under_its_own_contract(self, evm_node, evm_adapter):
        fake = evm_node.token_deploy(name="Tether USD", symbol="USDT", decimals=6)
        evm_node.transact(evm_node.contract(fake).functions.mint(evm_node.accounts[0].address, 10**12))
        to = fresh_address()

        receipt = send_usdt(evm_node, to, 7_000_000, token=fake)
        [transfer] = evm_adapter.block(receipt["blockNumber"], watched={to.lower()}).transfers

        assert transfer.contract == fake.lower()
        assert transfer.contract != evm_node.contracts["USDT"].lower()
        assert transfer.success is True

    def test_reports_a_failed_native_transfer_as_failed(self, evm_node, evm_adapter):
        # The test token has no receive function: ETH sent to it reverts.
        token = evm_node.contracts["USDT"]

        receipt = send_eth(evm_node, token, 10**15, gas=60_000)
        [transfer] = evm_adapter.block(receipt["blockNumber"], watched={token.lower()}).transfers

        assert receipt["status"] == 0
        assert transfer.success is False
        assert transfer.contract is None

    @staticmethod
    def requests_made_by(evm_adapter, call):
        made = []
        original = evm_adapter.node.post

        def counting_post(path, payload, *, what):
            made.append(what)
            return original(path, payload, what=what)

        evm_adapter.node.post = counting_post
        try:
            return call(), made
        finally:
            del evm_adapter.node.post

    def test_reads_a_block_without_token_logs_in_one_request(self, evm_node, evm_adapter):
        receipt = send_eth(evm_node, fresh_address(), 10**16)

        block, made = self.requests_made_by(
            evm_adapter, lambda: evm_adapter.block(receipt["blockNumber"], watched={fresh_address().lower()})
        )

        assert block.transfers == []
        assert made == ["eth_getBlockByNumber"]  # the logsBloom rules out Transfer logs

    def test_reads_a_token_block_without_watched_transfers_in_two_requests(self, evm_node, evm_adapter):
        receipt = send_usdt(evm_node, fresh_address(), 1_000)

        block, made = self.requests_made_by(
            evm_adapter, lambda: evm_adapter.block(receipt["blockNumber"], watched={fresh_address().lower()})
        )

        assert block.transfers == []
        assert made == ["eth_getBlockByNumber", "eth_getLogs"]


class TestBlockRange:
    def test_blocks_equal_block_by_block_and_cost_two_requests(self, evm_node, evm_adapter):
        to = [fresh_address() for _ in range(3)]
        first = send_eth(evm_node, to[0], 10**15)["blockNumber"]
        send_usdt(evm_node, to[1], 4_000_000)
        last = send_eth(evm_node, to[2], 3 * 10**15)["blockNumber"]
        watched = {a.lower() for a in to}
        one_by_one = [evm_adapter.block(h, watched=watched) for h in range(first, last + 1)]  # caches code checks

        blocks, made = TestBlockTransfers.requests_made_by(
            evm_adapter, lambda: evm_adapter.blocks(first, last, watched=watched)
        )

        assert blocks == one_by_one
        assert sorted(t.amount_base_units for b in blocks for t in b.transfers) == [4_000_000, 10**15, 3 * 10**15]
        assert made == ["batch of eth_getBlockByNumber", "eth_getLogs"]

    def test_a_missing_block_in_the_range_is_a_chain_error(self, evm_adapter):
        tip = evm_adapter.tip_height()

        with pytest.raises(ChainError):
            evm_adapter.blocks(tip, tip + 3)


class TestBalances:
    def test_balances_of_many_addresses_at_a_height_equal_each_balance_and_go_in_batches(
        self, evm_node, evm_adapter, monkeypatch
    ):
        monkeypatch.setattr("chains.evm.RECEIPT_BATCH", 2)  # three batches for five readings
        usdt = evm_node.contracts["USDT"]
        a, b = fresh_address(), fresh_address()
        send_eth(evm_node, a, 7)
        send_usdt(evm_node, b, 3_000_000)
        height = evm_adapter.tip_height()
        send_eth(evm_node, a, 5)  # after the height: not in the readings at it
        requests = []
        batch = evm_adapter.node.batch
        monkeypatch.setattr(evm_adapter.node, "batch", lambda calls: requests.append(len(calls)) or batch(calls))
        wanted = [(a, None), (a, usdt), (b, None), (b, usdt), (evm_node.accounts[0].address, None)]

        values = evm_adapter.balances(wanted, height=height)

        assert values[:4] == [7, 0, 0, 3_000_000]
        assert values == [evm_adapter.balance(address, token, height=height) for address, token in wanted]
        assert requests == [2, 2, 1]
        assert evm_adapter.balances([(a, None)]) == [12]  # the best block by default

    def test_a_token_contract_that_answers_nothing_is_a_chain_error(self, evm_node, evm_adapter):
        with pytest.raises(ChainError, match="balanceOf answered nothing"):
            evm_adapter.balances([(fresh_address(), fresh_address())])  # no contract there


class TestReorg:
    def test_block_hash_changes_when_the_chain_is_reverted_and_rebuilt(self, evm_node, evm_adapter):
        snapshot = evm_node.snapshot()
        to = fresh_address()
        receipt = send_eth(evm_node, to, 10**17)
        height = receipt["blockNumber"]
        old_hash = evm_adapter.block_hash(height)

        evm_node.revert(snapshot)
        send_eth(evm_node, fresh_address(), 10**17)  # another block at the same height
        evm_node.mine(1)

        assert evm_adapter.tip_height() >= height
        assert evm_adapter.block_hash(height) != old_hash
        assert all(t.match_key != to.lower() for t in evm_adapter.block(height).transfers)
        assert evm_adapter.balance(to) == 0


class TestSendAndStatus:
    def test_broadcasts_a_signed_transfer_and_reports_it_mined(self, evm_node, evm_adapter):
        sender = evm_node.accounts[2]
        to = fresh_address()
        unsigned = evm_adapter.build_transfer(from_address=sender.address, to_address=to, amount_base_units=10**15)
        signed_tx = sender.sign_transaction(unsigned.payload)
        signed = SignedTx(tx_hash="0x" + signed_tx.hash.hex().removeprefix("0x"), raw=signed_tx.raw_transaction.hex())

        tx_hash = evm_adapter.broadcast_irreversible(signed)
        again = evm_adapter.broadcast_irreversible(signed)  # a retry of the same transaction
        status = evm_adapter.tx_status(tx_hash)

        assert tx_hash == again == signed.tx_hash
        assert status.found is True and status.success is True
        assert status.block_hash == evm_adapter.block_hash(status.block_number)
        assert evm_adapter.balance(to) == 10**15

    def test_builds_a_token_transfer_the_node_executes(self, evm_node, evm_adapter):
        sender = evm_node.accounts[0]
        to = fresh_address()
        usdt = evm_node.contracts["USDT"]
        unsigned = evm_adapter.build_transfer(
            from_address=sender.address, to_address=to, amount_base_units=3_000_000, contract=usdt
        )
        signed_tx = sender.sign_transaction(unsigned.payload)

        tx_hash = evm_adapter.broadcast_irreversible(SignedTx(tx_hash="", raw=signed_tx.raw_transaction.hex()))

        assert evm_adapter.tx_status(tx_hash).success is True
        assert evm_adapter.balance(to, contract=usdt) == 3_000_000

    def test_refuses_a_transaction_without_funds(self, evm_node, evm_adapter):
        poor = Account.create()  # TEST-ONLY key, no ETH
        unsigned = evm_adapter.build_transfer(
            from_address=poor.address, to_address=fresh_address(), amount_base_units=10**18, nonce=0
        )
        signed_tx = poor.sign_transaction(unsigned.payload)

        with pytest.raises(TxRejected):
            evm_adapter.broadcast_irreversible(
                SignedTx(tx_hash="0x" + signed_tx.hash.hex().removeprefix("0x"), raw=signed_tx.raw_transaction.hex())
            )

    def test_a_transaction_whose_nonce_a_mined_one_used_is_never_sent(self, evm_node, evm_adapter):
        # ganache takes a nonce-0 raw transaction as nonceless: sent, it would pay a second time.
        sender = Account.create()  # TEST-ONLY
        send_eth(evm_node, sender.address, 10**18)
        to = fresh_address()

        def signed(value: int) -> SignedTx:
            unsigned = evm_adapter.build_transfer(
                from_address=sender.address, to_address=to, amount_base_units=value, nonce=0
            )
            tx = sender.sign_transaction(unsigned.payload)
            return SignedTx(tx_hash="0x" + bytes(tx.hash).hex(), raw="0x" + bytes(tx.raw_transaction).hex())

        first = evm_adapter.broadcast_irreversible(signed(1_000))
        with pytest.raises(NonceUsed, match="nonce 0"):
            evm_adapter.broadcast_irreversible(signed(2_000))  # another transaction of the used nonce 0

        assert evm_adapter.tx_status(first).success is True
        assert evm_adapter.balance(to) == 1_000
        assert evm_adapter.mined_count(sender.address) == 1

    def test_simulates_a_built_transfer_and_says_why_the_node_would_fail_it(self, evm_node, evm_adapter):
        sender = Account.create()  # TEST-ONLY
        send_eth(evm_node, sender.address, 10**18)
        send_usdt(evm_node, sender.address, 5_000_000)
        # A contract that refuses every call and payment (PUSH1 0 PUSH1 0 REVERT), hand-assembled.
        refuser = evm_node.send_tx({"data": "0x6005600c60003960056000f360006000fd", "gas": 100_000})["contractAddress"]

        def simulated(to: str, **token: str) -> str | None:
            unsigned = evm_adapter.build_transfer(
                from_address=sender.address, to_address=to, amount_base_units=3_000_000, **token
            )
            return evm_adapter.simulate(unsigned)

        assert simulated(fresh_address()) is None
        assert simulated(fresh_address(), contract=evm_node.contracts["USDT"]) is None
        assert "VM Exception" in (simulated(refuser) or "")  # its estimate fails too: out of gas at 21,000

    def test_unknown_transaction_is_not_found(self, evm_adapter):
        assert evm_adapter.tx_status("0x" + "ab" * 32).found is False

    def test_fee_estimate_is_the_node_gas_price(self, evm_node, evm_adapter):
        assert evm_adapter.fee_estimate() == evm_node.w3.eth.gas_price > 0


class TestNodeDown:
    def test_raises_chain_error_quickly(self):
        adapter = EvmAdapter(url=f"http://127.0.0.1:{free_port()}/", connect_timeout=0.5, read_timeout=1)
        started = time.monotonic()

        with pytest.raises(ChainError):
            adapter.tip_height()
        with pytest.raises(ChainError):
            adapter.block(1)

        assert time.monotonic() - started < 3

    def test_match_key_refuses_a_non_address(self, evm_adapter):
        with pytest.raises(ValueError):
            evm_adapter.match_key("0x1234")
        assert evm_adapter.match_key(Web3.to_checksum_address("0x" + "ab" * 20)) == "0x" + "ab" * 20
