"""
The one small interface every chain family implements (BTC, EVM, TRON).

Adapters speak to nodes and turn their answers into these plain values; they hold no keys
(signing is done by the addresses app's signer, handed in as a callable) and write no tables.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple, Protocol


class ChainError(Exception):
    """The node is unreachable, answered an error, or answered something malformed.

    The message says what was asked and what went wrong; it never carries a raw payload.
    """


@dataclass(frozen=True)
class Transfer:
    """One credit to one output/recipient found in a block: a deposit candidate."""

    tx_hash: str
    # BTC: output index (vout). EVM ERC20: log index. Native ETH/TRX: -1; EVM ether a contract
    # moved inside the transaction (chains.evm_trace): -2 - k, k its position among them.
    # TRON TRC20: log index within the transaction.
    index: int
    from_address: str
    to_address: str
    # The key deposits are matched on: BTC scriptPubKey hex, EVM lower-case 0x address,
    # TRON base58check address. `ChainAdapter.match_key(address)` gives the same key for a
    # stored deposit address.
    match_key: str
    amount_base_units: int
    # None for the native coin; the token contract (in the chain's canonical form) otherwise:
    # the same form as match_key (EVM lower-case 0x hex, TRON base58check), so compare it with
    # `adapter.match_key(coin.contract_address)`.
    contract: str | None
    # False for a reverted EVM transaction or a TRON contractRet other than SUCCESS.
    success: bool


class Spend(NamedTuple):
    """One input of a block's transaction on a UTXO chain: the output it spends, and by which transaction.

    A tuple rather than a dataclass: a block carries thousands of them and the scanner only
    looks each one up in a set of known outpoints.
    """

    txid: str  # the transaction that created the spent output
    vout: int  # its output index
    spender: str  # txid of the spending transaction


@dataclass(frozen=True)
class Block:
    number: int
    hash: str
    parent_hash: str
    timestamp: int  # seconds since the epoch
    transfers: list[Transfer] = field(default_factory=list)
    # UTXO chains (BTC): every input of every non-coinbase transaction, whatever `watched` was;
    # empty on account chains.
    spends: list[Spend] = field(default_factory=list)


@dataclass(frozen=True)
class TxStatus:
    tx_hash: str
    found: bool
    success: bool | None = None
    block_number: int | None = None
    block_hash: str | None = None
    # Once mined: the network fee it paid in the chain's base units, where the node says so.
    fee: int | None = None
    # Once mined: the token Transfer logs it emitted (EVM receipt logs, TRON transaction info).
    transfers: tuple[Transfer, ...] = ()


@dataclass(frozen=True)
class FeeTerms:
    """
    What a built transaction offers to pay for its inclusion, stored beside it once signed (payout_tx).

    Each chain fills its own terms and leaves the others None: EVM gas_limit with either
    max_fee_per_gas + max_priority_fee_per_gas (EIP-1559, wei) or gas_price (legacy, wei); TRON
    fee_limit (sun, the most its energy may burn); BTC fee_rate (sat/vB), vsize and fee (sat).
    """

    gas_limit: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    gas_price: int | None = None
    fee_limit: int | None = None
    fee_rate: Decimal | None = None
    vsize: int | None = None
    fee: int | None = None


@dataclass(frozen=True)
class UnsignedTx:
    """A transaction built by an adapter, to be signed by the signer for `from_address`."""

    chain_id: str
    from_address: str
    payload: object  # adapter-specific: an EVM tx dict, a bitcoinlib Transaction, a tronpy builder
    terms: FeeTerms = field(default_factory=FeeTerms)
    nonce: int | None = None  # EVM: the nonce it carries


@dataclass(frozen=True)
class Shortfall:
    """What a sender lacks to pay a transfer now (an adapter's `shortfall`), in base units."""

    address: str
    contract: str | None  # None: the chain's own coin (amount, gas or fees); else the token short
    free: int  # the balance less what the sender's unmined transfers already promise; may be negative
    needed: int
    what: str  # what `needed` covers, e.g. "value and gas"

    @property
    def missing(self) -> int:
        return self.needed - self.free

    def __str__(self) -> str:
        unit = f"of token {self.contract}" if self.contract else "of the chain's coin"
        return f"{self.address} holds {self.free} {unit} free, the transfer needs {self.needed} ({self.what})"


@dataclass(frozen=True)
class SignedTx:
    tx_hash: str
    raw: str  # hex or JSON, exactly what broadcast sends


# The signer's narrow interface as an adapter sees it: sign this unsigned transaction.
Signer = Callable[[UnsignedTx], SignedTx]


class ChainAdapter(Protocol):
    chain_id: str  # "BTC", "ETH" or "TRON", as coin_config.chain_id

    def tip_height(self) -> int:
        """Height of the node's best block."""

    def block_hash(self, height: int) -> str:
        """Hash of the best chain's block at height."""

    def block(self, height: int, watched: Collection[str] | None = None) -> Block:
        """The best chain's block at height with every transfer it carries (native and token).

        With `watched` (a set of match keys) only the transfers to those keys are returned, and
        only they cost extra node calls (EVM receipts): the fast path for the scanner. On a UTXO
        chain the block also lists every input (`Block.spends`), watched or not.
        """

    def blocks(self, first: int, last: int, watched: Collection[str] | None = None) -> list[Block]:
        """Blocks first..last (inclusive) as block() gives them, read in fewer node calls where the
        chain allows (EVM: one batched request and one eth_getLogs for the range).

        The blocks form one chain (each parent is the previous block); a reorg while reading raises
        ChainError.
        """

    def match_key(self, address: str) -> str:
        """The key under which transfers to this address appear in Transfer.match_key."""

    def balance(self, address: str, contract: str | None = None) -> int:
        """Balance of an address in base units (of the token if contract is given)."""

    def fee_estimate(self) -> int:
        """A fee rate in the chain's unit (sat/vB, wei per gas, sun)."""

    def build_transfer(
        self, *, from_address: str, to_address: str, amount_base_units: int, contract: str | None = None
    ) -> UnsignedTx:
        """An unsigned transfer for the signer."""

    def broadcast_irreversible(self, signed: SignedTx) -> str:
        """Send a signed transaction; return its hash once the node accepted it."""

    def tx_status(self, tx_hash: str) -> TxStatus:
        """Whether and where a transaction was mined, and whether it succeeded."""


class TxRejected(ChainError):
    """The node refused a broadcast transaction (bad signature, double spend, bad nonce, no funds)."""


class NonceUsed(TxRejected):
    """
    Not sent: the sender's mined transactions already used this transaction's nonce (EVM).

    It can never be mined now; either another transaction of the same nonce (a replacement of it)
    was mined, or something else took the nonce. A node refuses it anyway, and ganache 7 would
    even execute a nonce-0 transaction a second time (see EvmAdapter.broadcast_irreversible).
    """
