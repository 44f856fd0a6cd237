"""
EVM adapter (ETH and ERC20 tokens) over Ethereum JSON-RPC, with web3.py for addresses and encoding.

Reading a block costs a fixed number of requests, whatever its size:
  1. eth_getBlockByNumber(height, full transactions)  -> native ETH transfers, token calldata
  2. eth_getLogs(blockHash, Transfer topic)            -> ERC20 Transfer logs of ANY contract,
     skipped when the block's logsBloom shows that no Transfer log is in it
  3. rarely, one batched eth_getCode request for recipients not seen before, and one batched
     eth_getTransactionReceipt request for the few transactions whose success is not yet known.

How success is known without a receipt per transaction (so scanning runs at the speed of
eth_getBlockByNumber):
- A Transfer log exists only in a successful transaction (the EVM drops the logs of a reverted
  one): a log means success.
- A value transfer to an address without code cannot fail once it is in a block: no code runs,
  and funds and nonce were checked for inclusion. Deposit addresses are such addresses (their
  code-less state is asked once and cached). Value transfers to contracts get a receipt.
- A reverted token transfer leaves no log. Calls of transfer/transferFrom whose recipient (read
  from the calldata) got no log in that transaction get a receipt; a failed one is reported as a
  Transfer with success=False and index -1 (there is no log index), so the scanner can record the
  "fake deposit" and credit nothing.
With `watched` (a set of match keys) only transfers to those addresses are reported and only they
cost code/receipt look-ups; without it every transfer of the block is reported.

Addresses, contracts and match keys are lower-case 0x hex (compare a configured contract through
`match_key`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Collection, Sequence
from decimal import ROUND_CEILING, Decimal
from typing import Any

import rlp
from eth_account import Account
from eth_utils import is_address, keccak, to_checksum_address

from chains import evm_trace
from chains.base import (
    Block,
    ChainError,
    FeeTerms,
    NonceUsed,
    Shortfall,
    SignedTx,
    Transfer,
    TxRejected,
    TxStatus,
    UnsignedTx,
)
from chains.rpc import HttpNode, RpcError

TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
SELECTOR_TRANSFER = "0xa9059cbb"  # transfer(address,uint256)
SELECTOR_TRANSFER_FROM = "0x23b872dd"  # transferFrom(address,address,uint256)
SELECTOR_BALANCE_OF = "0x70a08231"  # balanceOf(address)
NATIVE_GAS = 21_000
TOKEN_GAS_FALLBACK = 100_000
RECEIPT_BATCH = 500
# What eth_getCode answers for an account without code.
NO_CODE = ("0x", "0x0", "", None)
# Opcode traces per batched request: each answer carries every step of a transaction.
TRACE_BATCH = 20
BLOCK_BATCH = 100
CODELESS_CACHE = 2_000_000


def _bloom_bits(value_hex: str) -> tuple[int, ...]:
    """The three bits a value sets in a block's 2048-bit logsBloom (yellow paper, M3:2048)."""
    digest = keccak(bytes.fromhex(value_hex.removeprefix("0x")))
    return tuple(((digest[i] << 8) | digest[i + 1]) & 2047 for i in (0, 2, 4))


def _bloom_may_contain(bloom_hex: object, bits: tuple[int, ...]) -> bool:
    if not isinstance(bloom_hex, str) or len(bloom_hex) != 514:
        return True  # no usable bloom: ask for the logs
    bloom = int(bloom_hex, 16)
    return all((bloom >> bit) & 1 for bit in bits)


TRANSFER_TOPIC_BLOOM_BITS = _bloom_bits(TRANSFER_TOPIC)


def _word_address(word: str) -> str:
    return "0x" + word[-40:].lower()


@dataclasses.dataclass(frozen=True)
class FeeMarket:
    """What the node says inclusion costs now, in wei per gas.

    base_fee is None on a chain without EIP-1559 (no baseFeePerGas in its latest block): legacy
    transactions there, priced by gas_price.
    """

    base_fee: int | None
    priority_fee: int
    gas_price: int


def with_margin(gas: int, margin: Decimal) -> int:
    """gas times margin, rounded up."""
    return int((Decimal(gas) * margin).to_integral_value(rounding=ROUND_CEILING))


def transfer_needs(unsigned: UnsignedTx) -> tuple[int, str | None, int]:
    """What a built transfer spends from its sender at most: (ether for value + gas at its max fee
    per gas, the token contract or None, the token amount)."""
    tx = unsigned.payload
    assert isinstance(tx, dict)
    per_gas = int(tx["maxFeePerGas"]) if "maxFeePerGas" in tx else int(tx["gasPrice"])
    ether = int(tx["value"]) + int(tx["gas"]) * per_gas
    data = str(tx.get("data", "0x"))
    if data.startswith(SELECTOR_TRANSFER):
        return ether, str(tx["to"]), int(data[-64:], 16)
    return ether, None, 0


def shortfall_of(unsigned: UnsignedTx, *, ether: int, tokens: Callable[[str], int] | None = None) -> Shortfall | None:
    """
    What the sender lacks to pay a built transfer, given what it has free of its other transfers not
    in a block yet: `ether` (wei), `tokens(contract)` (that token's base units, asked only for a
    token transfer whose ether is covered). None when nothing is missing.
    """
    needed, contract, amount = transfer_needs(unsigned)
    if ether < needed:
        return Shortfall(address=unsigned.from_address, contract=None, free=ether, needed=needed, what="value and gas")
    if contract is not None:
        assert tokens is not None, "a token transfer's check needs the token balance"
        free = tokens(contract)
        if free < amount:
            return Shortfall(address=unsigned.from_address, contract=contract, free=free, needed=amount, what="amount")
    return None


def raw_sender_nonce(raw: str) -> tuple[str, int]:
    """(lower-case sender, nonce) of a signed raw transaction (legacy or typed).

    :raises ValueError: not a signed EVM transaction.
    """
    data = bytes.fromhex(raw.removeprefix("0x"))
    try:
        fields = rlp.decode(data[1:]) if data and data[0] < 0x7F else rlp.decode(data)
        nonce_field = fields[1] if data[0] < 0x7F else fields[0]
        sender = Account.recover_transaction(data)
    except Exception as exc:  # rlp and eth-account raise several unrelated types on bad input
        raise ValueError(f"not a signed EVM transaction ({type(exc).__name__})") from None
    return sender.lower(), int.from_bytes(nonce_field, "big")


def _created_address(sender: str, nonce: int) -> str:
    """The address of the contract a transaction without `to` creates: keccak(rlp([sender, nonce]))[12:]."""
    return "0x" + keccak(rlp.encode([bytes.fromhex(sender[2:]), nonce]))[12:].hex()


class EvmAdapter:
    """ChainAdapter for an EVM chain (chain_id "ETH")."""

    def __init__(
        self,
        *,
        url: str,
        chain_id: str = "ETH",
        connect_timeout: float = 2.0,
        read_timeout: float = 15.0,
        gas_price_fallback_wei: int = 20_000_000_000,
        trace_internal: bool = False,
    ) -> None:
        self.chain_id = chain_id
        # Read the ether contracts move inside transactions (evm_trace): one opcode trace per
        # transaction that runs code, so only on a node with the debug API (ETH_TRACE_INTERNAL_TRANSFERS).
        self.trace_internal = trace_internal
        self.node = HttpNode(url, name=f"{chain_id} node", connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._gas_price_fallback = gas_price_fallback_wei
        self._network_id: int | None = None
        self._codeless_seen: set[str] = set()

    # --- reads -----------------------------------------------------------------------
    def tip_height(self) -> int:
        return self._int(self.node.call("eth_blockNumber"), "eth_blockNumber")

    def block_hash(self, height: int) -> str:
        raw = self.node.call("eth_getBlockByNumber", [hex(height), False])
        if not isinstance(raw, dict) or not isinstance(raw.get("hash"), str):
            raise ChainError(f"{self.chain_id} node: no block at height {height}")
        return raw["hash"]

    def match_key(self, address: str) -> str:
        """Lower-case 0x address; refuses anything that is not a 20-byte hex address."""
        if not isinstance(address, str) or not is_address(address):
            raise ValueError("not an EVM address")
        return address.lower()

    def block(self, height: int, watched: Collection[str] | None = None) -> Block:
        """The block at height with its ETH transfers and ERC20 Transfer logs (of any contract).

        With `watched` (a set of match keys) only transfers to those addresses are returned, and
        only their receipts are fetched; without it every transfer, with a receipt per value transfer.
        :raises ChainError: node down, no such block, or a malformed answer.
        """
        raw = self.node.call("eth_getBlockByNumber", [hex(height), True])
        if not isinstance(raw, dict):
            raise ChainError(f"{self.chain_id} node: no block at height {height}")
        try:
            block_hash = raw["hash"]
            parent_hash = raw["parentHash"]
            timestamp = int(raw["timestamp"], 16)
            if int(raw["number"], 16) != height:
                raise ChainError(f"{self.chain_id} node: asked block {height}, got another")
            if _bloom_may_contain(raw.get("logsBloom"), TRANSFER_TOPIC_BLOOM_BITS):
                logs = self.node.call("eth_getLogs", [{"blockHash": block_hash, "topics": [TRANSFER_TOPIC]}])
            else:
                logs = []  # the header's bloom filter proves no Transfer log is in this block
            transfers = self._transfers(raw["transactions"], logs, block_hash, watched)
        except ChainError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise ChainError(f"{self.chain_id} node: malformed block {height}") from None
        return Block(number=height, hash=block_hash, parent_hash=parent_hash, timestamp=timestamp, transfers=transfers)

    def blocks(self, first: int, last: int, watched: Collection[str] | None = None) -> list[Block]:
        """Blocks first..last (inclusive) as block() gives them, read with fewer requests: the bodies
        in one batched request and the Transfer logs of the whole range in one eth_getLogs.

        The range must be consistent: each block's parent is the previous one and every log belongs
        to one of the blocks read; a reorg while reading raises ChainError (read again next time).
        :raises ChainError: node down, a missing block, a reorg during the read, a malformed answer.
        """
        if last < first:
            return []
        heights = list(range(first, last + 1))
        raws: list[Any] = []
        for start in range(0, len(heights), BLOCK_BATCH):
            chunk = heights[start : start + BLOCK_BATCH]
            raws.extend(self.node.batch([("eth_getBlockByNumber", [hex(h), True]) for h in chunk]))
        try:
            for height, raw in zip(heights, raws, strict=True):
                if not isinstance(raw, dict):
                    raise ChainError(f"{self.chain_id} node: no block at height {height}")
                if int(raw["number"], 16) != height:
                    raise ChainError(f"{self.chain_id} node: asked block {height}, got another")
            for previous, raw in itertools.pairwise(raws):
                if raw["parentHash"] != previous["hash"]:
                    raise ChainError(f"{self.chain_id} node: the chain changed while blocks were read")
            positive = [
                h
                for h, raw in zip(heights, raws, strict=True)
                if _bloom_may_contain(raw.get("logsBloom"), TRANSFER_TOPIC_BLOOM_BITS)
            ]
            by_block: dict[str, list[dict[str, Any]]] = {raw["hash"]: [] for raw in raws}
            if positive:
                logs = self.node.call(
                    "eth_getLogs",
                    [{"fromBlock": hex(positive[0]), "toBlock": hex(positive[-1]), "topics": [TRANSFER_TOPIC]}],
                )
                for log in logs:
                    if log["blockHash"] not in by_block:
                        raise ChainError(f"{self.chain_id} node: the chain changed while logs were read")
                    by_block[log["blockHash"]].append(log)
            return [
                Block(
                    number=height,
                    hash=raw["hash"],
                    parent_hash=raw["parentHash"],
                    timestamp=int(raw["timestamp"], 16),
                    transfers=self._transfers(raw["transactions"], by_block[raw["hash"]], raw["hash"], watched),
                )
                for height, raw in zip(heights, raws, strict=True)
            ]
        except ChainError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            raise ChainError(f"{self.chain_id} node: malformed block in {first}..{last}") from None

    def _transfers(
        self, txs: list[dict[str, Any]], logs: list[dict[str, Any]], block_hash: str, watched: Collection[str] | None
    ) -> list[Transfer]:
        # (tx_hash, kind, from, to, amount, contract): kind "native" or "call" (token calldata).
        candidates: list[tuple[str, str, str, str, int, str | None]] = []
        for tx in txs:
            to = tx.get("to")
            if not to:
                continue  # contract creation
            to = to.lower()
            value = int(tx["value"], 16)
            if value and (watched is None or to in watched):
                candidates.append((tx["hash"], "native", tx["from"].lower(), to, value, None))
            data = tx.get("input") or tx.get("data") or "0x"
            selector = data[:10]
            if selector == SELECTOR_TRANSFER and len(data) >= 138:
                recipient, amount_word, sender = _word_address(data[10:74]), data[74:138], tx["from"].lower()
            elif selector == SELECTOR_TRANSFER_FROM and len(data) >= 202:
                sender, recipient, amount_word = _word_address(data[10:74]), _word_address(data[74:138]), data[138:202]
            else:
                continue
            if watched is None or recipient in watched:
                candidates.append((tx["hash"], "call", sender, recipient, int(amount_word, 16), to))

        found: list[Transfer] = []
        log_txs: set[str] = set()
        for log in logs:
            topics = log["topics"]
            data = log["data"]
            # ERC20 Transfer: from and to indexed, value in data. ERC721 indexes the value: skip it.
            if len(topics) != 3 or log.get("removed") or len(data) != 66:
                continue
            if log["blockHash"] != block_hash:
                raise ChainError(f"{self.chain_id} node: a log of another block in {block_hash}")
            recipient = _word_address(topics[2])
            if watched is not None and recipient not in watched:
                continue
            tx_hash = log["transactionHash"]
            log_txs.add(tx_hash)
            found.append(
                Transfer(
                    tx_hash=tx_hash,
                    index=int(log["logIndex"], 16),
                    from_address=_word_address(topics[1]),
                    to_address=recipient,
                    match_key=recipient,
                    amount_base_units=int(data, 16),
                    contract=log["address"].lower(),
                    success=True,
                )
            )

        # Receipts only where success is not already known:
        # - a Transfer log exists only in a successful transaction;
        # - a value transfer to an address without code cannot fail once it is in a block (no code
        #   runs; funds and nonce were checked for inclusion), so only transfers to contracts need one;
        # - a token call whose recipient got a log in the same transaction succeeded.
        logged = {(t.tx_hash, t.match_key) for t in found}
        codeless = self._codeless({c[3] for c in candidates if c[1] == "native"})
        need = {
            tx_hash
            for tx_hash, kind, _, recipient, _, _ in candidates
            if (kind == "native" and recipient not in codeless)
            or (kind == "call" and (tx_hash, recipient) not in logged)
        }
        statuses = self._statuses(sorted(need))
        transfers: list[Transfer] = []
        for tx_hash, kind, sender, recipient, amount, contract in candidates:
            ok = statuses.get(tx_hash, True)
            if kind == "call" and ok:
                continue  # a successful token call is reported by its Transfer log
            transfers.append(
                Transfer(
                    tx_hash=tx_hash,
                    index=-1,
                    from_address=sender,
                    to_address=recipient,
                    match_key=recipient,
                    amount_base_units=amount,
                    contract=contract,
                    success=ok,
                )
            )
        for transfer in found:
            if not statuses.get(transfer.tx_hash, True):
                # Not possible on a correct node (a reverted transaction has no logs): never credit it.
                transfer = dataclasses.replace(transfer, success=False)
            transfers.append(transfer)
        if self.trace_internal:
            transfers.extend(self._internal(txs, watched))
        return transfers

    def _internal(self, txs: list[dict[str, Any]], watched: Collection[str] | None) -> list[Transfer]:
        """
        The ether contracts moved inside the block's transactions (chains.evm_trace), to watched
        addresses: native transfers of index -2 - k, k their position among the transaction's own
        internal transfers (the same on every read of the block), successful if the receipt is.
        """
        calls = [tx for tx in txs if tx.get("to")]
        plain = {tx["to"].lower() for tx in calls if (tx.get("input") or tx.get("data") or "0x") == "0x"}
        codeless = self._codeless_at(plain, height=int(calls[0]["blockNumber"], 16)) if plain else set()
        # A transaction runs code when it carries data or pays a contract (its receive function).
        traced = [
            tx for tx in calls
            if (tx.get("input") or tx.get("data") or "0x") != "0x" or tx["to"].lower() not in codeless
        ]  # fmt: skip
        # A contract creation runs its constructor, which may pay too: its frame is the new contract.
        traced += [tx for tx in txs if not tx.get("to")]
        found: list[tuple[str, int, str, str, int]] = []
        for start in range(0, len(traced), TRACE_BATCH):
            chunk = traced[start : start + TRACE_BATCH]
            traces = self.node.batch(
                [("debug_traceTransaction", [tx["hash"], {"disableStorage": True, "disableMemory": True}])
                 for tx in chunk]
            )  # fmt: skip
            for tx, trace in zip(chunk, traces, strict=True):
                runs = tx.get("to") or _created_address(tx["from"], int(tx["nonce"], 16))
                moved = evm_trace.internal_transfers(trace["structLogs"], to=runs)
                found.extend(
                    (tx["hash"], -2 - k, sender, recipient, wei)
                    for k, (sender, recipient, wei) in enumerate(moved)
                    if wei and (watched is None or recipient in watched)
                )
        statuses = self._statuses(sorted({tx_hash for tx_hash, *_ in found}))
        return [
            Transfer(
                tx_hash=tx_hash, index=index, from_address=sender, to_address=recipient, match_key=recipient,
                amount_base_units=wei, contract=None, success=statuses[tx_hash],
            )
            for tx_hash, index, sender, recipient, wei in found
        ]  # fmt: skip

    def _codeless(self, addresses: set[str]) -> set[str]:
        """The addresses among these that hold no code, asked once per address (one batched request).

        An address without code stays so unless its own key signs an EIP-7702 delegation, which
        a deposit address never does; one seen with code is asked again each time.
        """
        unknown = sorted(a for a in addresses if a not in self._codeless_seen)
        for address, code in zip(unknown, self._codes(unknown, "latest"), strict=True):
            if code in NO_CODE:
                if len(self._codeless_seen) >= CODELESS_CACHE:
                    self._codeless_seen.clear()
                self._codeless_seen.add(address)
        return {a for a in addresses if a in self._codeless_seen}

    def _codeless_at(self, addresses: set[str], *, height: int) -> set[str]:
        """
        The addresses among these without code after block `height`, asked every time (batched).

        Not _codeless's cache: a contract's address is paid before its code is there (a CREATE2
        wallet, a contract an account deploys at its next nonce), and its receive function runs
        from then on; the state of the block itself, not the latest (a scan behind the tip).
        """
        wanted = sorted(addresses)
        return {a for a, code in zip(wanted, self._codes(wanted, hex(height)), strict=True) if code in NO_CODE}

    def _codes(self, addresses: Sequence[str], block: str) -> list[Any]:
        """eth_getCode of each address at `block`, in order, in batched requests of RECEIPT_BATCH."""
        codes: list[Any] = []
        for start in range(0, len(addresses), RECEIPT_BATCH):
            chunk = addresses[start : start + RECEIPT_BATCH]
            codes.extend(self.node.batch([("eth_getCode", [a, block]) for a in chunk]))
        return codes

    def _statuses(self, tx_hashes: list[str]) -> dict[str, bool]:
        statuses: dict[str, bool] = {}
        for start in range(0, len(tx_hashes), RECEIPT_BATCH):
            chunk = tx_hashes[start : start + RECEIPT_BATCH]
            receipts = self.node.batch([("eth_getTransactionReceipt", [h]) for h in chunk])
            for tx_hash, receipt in zip(chunk, receipts, strict=True):
                if not isinstance(receipt, dict) or "status" not in receipt:
                    raise ChainError(f"{self.chain_id} node: no receipt for mined transaction {tx_hash}")
                statuses[tx_hash] = int(receipt["status"], 16) == 1
        return statuses

    def balance(self, address: str, contract: str | None = None, *, height: int | None = None) -> int:
        """Balance in base units at the best block, or at block `height` (proof of reserves reads every
        address at one height; the node must keep that block's state)."""
        method, params = self._balance_call(address, contract, height)
        return self._balance_value(method, self.node.call(method, params))

    def balances(self, wanted: Sequence[tuple[str, str | None]], *, height: int | None = None) -> list[int]:
        """balance() of many (address, contract or None for ether), in order, asked in batched requests
        of RECEIPT_BATCH: proof of reserves reads every exchange address."""
        calls = [self._balance_call(address, contract, height) for address, contract in wanted]
        values: list[int] = []
        for start in range(0, len(calls), RECEIPT_BATCH):
            chunk = calls[start : start + RECEIPT_BATCH]
            answers = self.node.batch(chunk)
            values.extend(
                self._balance_value(method, answer) for (method, _), answer in zip(chunk, answers, strict=True)
            )
        return values

    def _balance_call(self, address: str, contract: str | None, height: int | None) -> tuple[str, list[object]]:
        key = self.match_key(address)
        block = "latest" if height is None else hex(height)
        if contract is None:
            return "eth_getBalance", [key, block]
        data = SELECTOR_BALANCE_OF + key[2:].rjust(64, "0")
        return "eth_call", [{"to": self.match_key(contract), "data": data}, block]

    def _balance_value(self, method: str, answer: object) -> int:
        if method == "eth_getBalance":
            return self._int(answer, "eth_getBalance")
        if not isinstance(answer, str) or len(answer) < 66:
            raise ChainError(f"{self.chain_id} node: balanceOf answered nothing (not a token contract?)")
        return int(answer[:66], 16)

    def fee_estimate(self) -> int:
        """Gas price in wei (the configured fallback when the node says 0)."""
        price = self._int(self.node.call("eth_gasPrice"), "eth_gasPrice")
        return price or self._gas_price_fallback

    def fee_market(self) -> FeeMarket:
        """
        The base fee of the latest block (None without EIP-1559), the priority fee the node suggests
        (eth_maxPriorityFeePerGas, else the median reward of eth_feeHistory's last blocks, else 0)
        and its legacy gas price (the configured fallback when it says 0).
        """
        latest = self.node.call("eth_getBlockByNumber", ["latest", False])
        if not isinstance(latest, dict):
            raise ChainError(f"{self.chain_id} node: no latest block")
        base_fee = self._int(latest["baseFeePerGas"], "baseFeePerGas") if latest.get("baseFeePerGas") else None
        gas_price = self.fee_estimate()
        priority = 0
        if base_fee is not None:
            try:
                priority = self._int(self.node.call("eth_maxPriorityFeePerGas"), "eth_maxPriorityFeePerGas")
            except RpcError:  # not every node has it: the median tip of recent blocks instead
                history = self.node.call("eth_feeHistory", [5, "latest", [50]])
                rewards = sorted(self._int(r[0], "eth_feeHistory") for r in (history or {}).get("reward") or [] if r)
                priority = rewards[len(rewards) // 2] if rewards else 0
        return FeeMarket(base_fee=base_fee, priority_fee=priority, gas_price=gas_price)

    def estimate_gas(self, *, from_address: str, to_address: str, value: int = 0, data: str = "0x") -> int:
        """eth_estimateGas of a call from from_address (a contract recipient may need more than 21,000).

        :raises RpcError: the node cannot estimate it (the call reverts, the sender lacks funds).
        """
        call = {
            "from": to_checksum_address(self.match_key(from_address)),
            "to": to_checksum_address(self.match_key(to_address)),
            "value": hex(value),
            "data": data,
        }
        return self._int(self.node.call("eth_estimateGas", [call]), "eth_estimateGas")

    def next_nonce(self, address: str) -> int:
        """The node's count of transactions from address, pending ones included: its next nonce."""
        sender = to_checksum_address(self.match_key(address))
        return self._int(self.node.call("eth_getTransactionCount", [sender, "pending"]), "eth_getTransactionCount")

    def mined_count(self, address: str, *, height: int | None = None) -> int:
        """The node's count of transactions from address in its block at height (else its latest
        block): every nonce below it is mined, used for good on that chain."""
        sender = to_checksum_address(self.match_key(address))
        at = hex(height) if height is not None else "latest"
        return self._int(self.node.call("eth_getTransactionCount", [sender, at]), "eth_getTransactionCount")

    def network_id(self) -> int:
        if self._network_id is None:
            self._network_id = self._int(self.node.call("eth_chainId"), "eth_chainId")
        return self._network_id

    # --- writes ----------------------------------------------------------------------
    def build_transfer(
        self,
        *,
        from_address: str,
        to_address: str,
        amount_base_units: int,
        contract: str | None = None,
        nonce: int | None = None,
        gas_price: int | None = None,
        max_fee_per_gas: int | None = None,
        max_priority_fee_per_gas: int | None = None,
        gas_limit: int | None = None,
        gas_margin: Decimal = Decimal("1.25"),
    ) -> UnsignedTx:
        """
        A transaction dict ready for eth-account's sign_transaction: EIP-1559 (type 2) when
        max_fee_per_gas is given, else legacy at gas_price (the node's when None).

        `nonce` should come from the caller's nonce allocation (withdrawals lock it per hot
        address); without it the node's pending count is used. Without gas_limit the node estimates
        it: a plain transfer to an address without code is 21,000, one to a contract (a contract
        wallet's receive runs code) and a token transfer get the estimate times gas_margin; a token
        estimate that fails (the sender not funded yet) falls back to 100,000.
        """
        if amount_base_units <= 0:
            raise ValueError("amount must be positive")
        sender = to_checksum_address(self.match_key(from_address))
        recipient = to_checksum_address(self.match_key(to_address))
        if nonce is None:
            nonce = self.next_nonce(sender)
        tx: dict[str, Any] = {"chainId": self.network_id(), "nonce": nonce}
        if contract is None:
            tx.update({"to": recipient, "value": amount_base_units, "data": "0x"})
            if gas_limit is None:
                gas_limit = self._gas_for(tx, sender=sender, margin=gas_margin, fallback=NATIVE_GAS)
        else:
            data = SELECTOR_TRANSFER + recipient[2:].lower().rjust(64, "0") + format(amount_base_units, "064x")
            token = to_checksum_address(self.match_key(contract))
            tx.update({"to": token, "value": 0, "data": data})
            if gas_limit is None:
                gas_limit = self._gas_for(tx, sender=sender, margin=gas_margin, fallback=TOKEN_GAS_FALLBACK)
        tx["gas"] = gas_limit
        if max_fee_per_gas is not None:
            if max_priority_fee_per_gas is None or max_priority_fee_per_gas > max_fee_per_gas:
                raise ValueError("an EIP-1559 transaction needs a priority fee no higher than its max fee")
            tx.update({"type": 2, "maxFeePerGas": max_fee_per_gas, "maxPriorityFeePerGas": max_priority_fee_per_gas})
            terms = FeeTerms(
                gas_limit=gas_limit, max_fee_per_gas=max_fee_per_gas, max_priority_fee_per_gas=max_priority_fee_per_gas
            )
        else:
            tx["gasPrice"] = gas_price if gas_price is not None else self.fee_estimate()
            terms = FeeTerms(gas_limit=gas_limit, gas_price=tx["gasPrice"])
        return UnsignedTx(chain_id=self.chain_id, from_address=sender, payload=tx, terms=terms, nonce=nonce)

    def _gas_for(self, tx: dict[str, Any], *, sender: str, margin: Decimal, fallback: int) -> int:
        try:
            estimate = self.estimate_gas(
                from_address=sender, to_address=tx["to"], value=int(tx["value"]), data=str(tx["data"])
            )
        except RpcError:
            # The sender cannot pay it yet (shortfall refuses it next), or the call reverts (it
            # would fail on chain, and the payout with it).
            return fallback
        if tx["data"] == "0x" and estimate <= NATIVE_GAS:
            return estimate  # no code runs: exactly 21,000
        return with_margin(estimate, margin)

    def simulate(self, unsigned: UnsignedTx) -> str | None:
        """
        Run a built transaction as eth_call on the latest block, with its own gas limit: None when
        the node runs it to the end, else the node's reason why not (a revert, out of gas, an invalid
        opcode). Sent, such a transaction would be mined as failed: the sender pays its gas and the
        recipient gets nothing. Call it once shortfall found nothing missing, so that a lack of funds
        is not taken for a revert.

        :raises ChainError: the node is unreachable or answered something malformed.
        """
        tx = unsigned.payload
        assert isinstance(tx, dict)
        call = {
            "from": to_checksum_address(self.match_key(unsigned.from_address)),
            "to": tx["to"],
            "value": hex(int(tx["value"])),
            "data": str(tx.get("data", "0x")),
            "gas": hex(int(tx["gas"])),
        }
        try:
            self.node.call("eth_call", [call, "latest"])
        except RpcError as exc:
            return (exc.node_message or str(exc))[:200]
        return None

    def shortfall(self, unsigned: UnsignedTx, *, reserved_native: int = 0, reserved_token: int = 0) -> Shortfall | None:
        """
        What the sender lacks to pay this transfer now (ether for value + gas, or the token amount), or None.

        Checked before signing so that a transfer the node would refuse, or that would revert, never
        takes a nonce. reserved_native / reserved_token: what the sender's transfers not in a block
        yet already promise (the node's balance, at its latest block, does not show them).
        """
        ether = self.balance(unsigned.from_address) - reserved_native

        def tokens(contract: str) -> int:  # asked only for a token transfer
            return self.balance(unsigned.from_address, contract=contract) - reserved_token

        return shortfall_of(unsigned, ether=ether, tokens=tokens)

    def has_code(self, addresses: Collection[str]) -> dict[str, bool]:
        """{lower-case address: whether it holds code now} (a contract, an EIP-7702 delegated account
        whose code starts 0xef0100), asked in batched eth_getCode requests."""
        wanted = sorted({self.match_key(a) for a in addresses})
        codes: dict[str, bool] = {}
        for address, code in zip(wanted, self._codes(wanted, "latest"), strict=True):
            if not isinstance(code, str) and code is not None:
                raise ChainError(f"{self.chain_id} node: eth_getCode answered something malformed")
            codes[address] = code not in NO_CODE
        return codes

    def broadcast_irreversible(self, signed: SignedTx) -> str:
        """
        eth_sendRawTransaction, unless the node has the transaction already (its hash is returned)
        or the sender's mined transactions used its nonce already (NonceUsed, nothing sent).

        Both checks come first, in one batched request, because ganache 7 takes a raw transaction
        of nonce 0 as one without a nonce (its RLP is empty) and gives it the next free one: it
        would execute a replayed nonce-0 transaction, or a replacement of one, a second time
        (ganache issue #3794). A node refuses such a transaction anyway.
        :raises NonceUsed: its nonce is used by a mined transaction: it can never be mined now.
        :raises TxRejected: the node refused it (bad nonce, no funds, bad signature, underpriced).
        """
        raw = signed.raw if signed.raw.startswith("0x") else "0x" + signed.raw
        sender, nonce = raw_sender_nonce(raw)
        known, mined = self.node.batch(
            [
                ("eth_getTransactionByHash", [signed.tx_hash or "0x" + "00" * 32]),
                ("eth_getTransactionCount", [to_checksum_address(sender), "latest"]),
            ]
        )
        if signed.tx_hash and known:
            return signed.tx_hash
        if self._int(mined, "eth_getTransactionCount") > nonce:
            raise NonceUsed(f"{self.chain_id}: nonce {nonce} of {sender} is used by a mined transaction")
        try:
            tx_hash = self.node.call("eth_sendRawTransaction", [raw])
        except RpcError as exc:
            if signed.tx_hash and self.node.call("eth_getTransactionByHash", [signed.tx_hash]):
                return signed.tx_hash  # the node got it meanwhile (another broadcaster)
            raise TxRejected(f"{self.chain_id} node refused the transaction: {exc.node_message}") from None
        if not isinstance(tx_hash, str) or (signed.tx_hash and tx_hash.lower() != signed.tx_hash.lower()):
            raise ChainError(f"{self.chain_id} node: eth_sendRawTransaction answered another hash")
        return tx_hash

    def broadcast_batch(self, signed: Sequence[SignedTx]) -> list[str | ChainError]:
        """
        broadcast_irreversible for several stored transactions in a few batched requests; each
        entry's outcome in order: its hash (the node has it now, sent here or before) or the error
        broadcast_irreversible would raise for it alone (NonceUsed, TxRejected, ChainError for an
        answer of another hash). The same checks come first, for every entry at once: the
        transactions the node has already, and the senders' mined counts (ganache issue #3794).
        Entries go to the node in the order given: give one sender's in nonce order.

        :raises ChainError: the node is unreachable or answered something malformed: nothing known
            about any entry (each may have been sent or not; sending a stored one again is harmless).
        """
        if not signed:
            return []
        raws = [s.raw if s.raw.startswith("0x") else "0x" + s.raw for s in signed]
        senders_nonces = [raw_sender_nonce(raw) for raw in raws]
        senders = sorted({sender for sender, _ in senders_nonces})
        answers = self.node.batch(
            [("eth_getTransactionByHash", [s.tx_hash or "0x" + "00" * 32]) for s in signed]
            + [("eth_getTransactionCount", [to_checksum_address(a), "latest"]) for a in senders]
        )
        known, counts = answers[: len(signed)], answers[len(signed) :]
        mined = {a: self._int(c, "eth_getTransactionCount") for a, c in zip(senders, counts, strict=True)}
        outcomes: list[str | ChainError | None] = [None] * len(signed)
        to_send: list[int] = []
        for i, (tx, (sender, nonce)) in enumerate(zip(signed, senders_nonces, strict=True)):
            if tx.tx_hash and known[i]:
                outcomes[i] = tx.tx_hash
            elif mined[sender] > nonce:
                outcomes[i] = NonceUsed(f"{self.chain_id}: nonce {nonce} of {sender} is used by a mined transaction")
            else:
                to_send.append(i)
        answers = self.node.batch_results([("eth_sendRawTransaction", [raws[i]]) for i in to_send])
        refused = [i for i, answer in zip(to_send, answers, strict=True) if isinstance(answer, RpcError)]
        # A refused one the node has anyway (another broadcaster sent it meanwhile) counts as sent.
        had = self.node.batch([("eth_getTransactionByHash", [signed[i].tx_hash or "0x" + "00" * 32]) for i in refused])
        got = dict(zip(refused, had, strict=True))
        for i, answer in zip(to_send, answers, strict=True):
            tx_hash = signed[i].tx_hash
            if isinstance(answer, RpcError):
                outcomes[i] = (
                    tx_hash
                    if tx_hash and got[i]
                    else TxRejected(f"{self.chain_id} node refused the transaction: {answer.node_message}")
                )
            elif not isinstance(answer, str) or (tx_hash and answer.lower() != tx_hash.lower()):
                outcomes[i] = ChainError(f"{self.chain_id} node: eth_sendRawTransaction answered another hash")
            else:
                outcomes[i] = answer
        return [o if o is not None else ChainError(f"{self.chain_id} node: no answer") for o in outcomes]

    def tx_status(self, tx_hash: str) -> TxStatus:
        """Whether and where a transaction was mined, whether it succeeded, the fee it paid (gas used
        times its effective gas price) and the token Transfer logs of its receipt."""
        receipt = self.node.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is None:
            pending = self.node.call("eth_getTransactionByHash", [tx_hash])
            return TxStatus(tx_hash=tx_hash, found=bool(pending))
        try:
            price = receipt.get("effectiveGasPrice")
            fee = int(receipt["gasUsed"], 16) * int(price, 16) if price else None
            transfers = tuple(
                Transfer(
                    tx_hash=tx_hash,
                    index=int(log["logIndex"], 16),
                    from_address=_word_address(log["topics"][1]),
                    to_address=_word_address(log["topics"][2]),
                    match_key=_word_address(log["topics"][2]),
                    amount_base_units=int(log["data"], 16),
                    contract=log["address"].lower(),
                    success=True,
                )
                for log in receipt.get("logs") or []
                if len(log.get("topics") or []) == 3
                and log["topics"][0].lower() == TRANSFER_TOPIC
                and len(log.get("data") or "") == 66
            )
            return TxStatus(
                tx_hash=tx_hash,
                found=True,
                success=int(receipt["status"], 16) == 1,
                block_number=int(receipt["blockNumber"], 16),
                block_hash=receipt["blockHash"],
                fee=fee,
                transfers=transfers,
            )
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ChainError(f"{self.chain_id} node: malformed receipt of {tx_hash}") from None

    def _int(self, value: object, what: str) -> int:
        try:
            return int(value, 16)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ChainError(f"{self.chain_id} node: {what} answered a malformed number") from None
