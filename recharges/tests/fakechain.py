"""
A scriptable in-memory chain behind the ChainAdapter interface: a fake of the outside world (a node).

Blocks are mined with chosen transfers; `reorg(depth, ...)` replaces the last `depth` blocks
with a new, longer (or equal) branch, as a node does when it switches to a heavier chain.
`down` makes every call fail like an unreachable node; `garbage_heights` makes those blocks
come back malformed.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import replace

from chains.base import Block, ChainError, Transfer

USDT_ERC20 = "0xdac17f958d2ee523a2206206994597c13d831ec7"  # the seeded coin's contract, lower-cased
LOOKALIKE_USDT = "0x" + "66" * 20  # another contract whose token also calls itself USDT

_salt = itertools.count(1)
_tx = itertools.count(1)


def tx_hash() -> str:
    return "0x" + hashlib.sha256(f"tx{next(_tx)}".encode()).hexdigest()


def eth_address(n: int) -> str:
    return "0x" + f"{n:040x}"


def transfer(
    *,
    to: str,
    amount: int,
    tx: str | None = None,
    index: int = -1,
    contract: str | None = None,
    success: bool = True,
    key: str | None = None,
) -> Transfer:
    return Transfer(
        tx_hash=tx or tx_hash(),
        index=index,
        from_address="0x" + "ab" * 20,
        to_address=to,
        match_key=key if key is not None else to.lower(),
        amount_base_units=amount,
        contract=contract,
        success=success,
    )


class FakeChain:
    def __init__(self, chain_id: str = "ETH", *, case_insensitive: bool = True) -> None:
        self.chain_id = chain_id
        self.case_insensitive = case_insensitive
        self.mined: list[Block] = []
        self.down = False
        self.garbage_heights: set[int] = set()
        self.calls = {"tip_height": 0, "block": 0, "block_hash": 0}
        self._lock = threading.Lock()
        self.mine()  # genesis at height 0

    # --- scripting -----------------------------------------------------------------------------

    def mine(self, transfers: list[Transfer] | None = None, count: int = 1) -> Block:
        with self._lock:
            for i in range(count):
                number = len(self.mined)
                parent = self.mined[-1].hash if self.mined else "0x" + "00" * 32
                salt = next(_salt)
                digest = hashlib.sha256(f"{self.chain_id}|{number}|{parent}|{salt}".encode()).hexdigest()
                block = Block(
                    number=number,
                    hash="0x" + digest,
                    parent_hash=parent,
                    timestamp=1_700_000_000 + number,
                    transfers=list(transfers or []) if i == 0 else [],
                )
                self.mined.append(block)
            return self.mined[-1]

    def reorg(self, *, depth: int, branch: list[list[Transfer]]) -> list[Block]:
        """Drop the last `depth` blocks and mine `branch` (one list of transfers per new block)."""
        with self._lock:
            orphaned = self.mined[len(self.mined) - depth :]
            del self.mined[len(self.mined) - depth :]
        for transfers in branch:
            self.mine(transfers)
        return orphaned

    # --- ChainAdapter --------------------------------------------------------------------------

    def _check(self, name: str) -> None:
        self.calls[name] += 1
        if self.down:
            raise ChainError(f"{name}: connection refused")

    def tip_height(self) -> int:
        self._check("tip_height")
        return len(self.mined) - 1

    def block_hash(self, height: int) -> str:
        self._check("block_hash")
        if not 0 <= height < len(self.mined):
            raise ChainError(f"block_hash({height}): no such block")
        return self.mined[height].hash

    def block(self, height: int) -> Block:
        self._check("block")
        if not 0 <= height < len(self.mined):
            raise ChainError(f"block({height}): no such block")
        block = self.mined[height]
        if height in self.garbage_heights:
            return replace(block, number=height + 7, hash="")
        return block

    def match_key(self, address: str) -> str:
        if not isinstance(address, str) or not address:
            raise ValueError("not an address")
        return address.lower() if self.case_insensitive else address

    def balance(self, address: str, contract: str | None = None) -> int:
        raise NotImplementedError

    def fee_estimate(self) -> int:
        raise NotImplementedError

    def build_transfer(self, **kwargs: object) -> object:
        raise NotImplementedError

    def broadcast_irreversible(self, signed: object) -> str:
        raise NotImplementedError

    def tx_status(self, tx_hash: str) -> object:
        raise NotImplementedError


class FilteringFakeChain(FakeChain):
    """A node adapter that, like the EVM and BTC adapters, returns only transfers to watched keys."""

    def block(self, height: int, watched=None) -> Block:
        block = super().block(height)
        if watched is None:
            return block
        return replace(block, transfers=[t for t in block.transfers if t.match_key in watched])


class RangeFakeChain(FilteringFakeChain):
    """A node adapter with blocks(first, last), like the real adapters: a range in one call, all or nothing."""

    def __init__(self, chain_id: str = "ETH") -> None:
        self.range_calls = 0
        super().__init__(chain_id)

    def blocks(self, first: int, last: int, watched=None) -> list[Block]:
        self.range_calls += 1
        found = [FilteringFakeChain.block(self, height, watched) for height in range(first, last + 1)]
        for previous, block in itertools.pairwise(found):
            if block.parent_hash != previous.hash:
                raise ChainError("the chain changed while blocks were read")
        return found
