"""
Ether moved by contracts inside a transaction (internal transfers), read from the node's opcode
trace (`debug_traceTransaction` with the default struct logger: geth, erigon, ganache).

A smart-contract wallet (a Safe), another exchange's batch payout or a bridge pays ether by a CALL
with value from inside a contract: the transaction's own `value` goes to the contract, and the
deposit address appears in no field of the transaction or its receipt. Only executing it again
shows the CALL. The trace is walked frame by frame: a CALL with value opens a frame (its target has
code) or completes at once (no code); it took effect when it returned 1 to its caller and every
frame around it returned too. A frame that reverted or failed takes back every transfer made in it.
The transaction's own success is its receipt's (the caller checks it).

Not seen: ether a SELFDESTRUCT sends (the struct log does not carry the amount), and value sent
with CREATE (it goes to a new contract, never a deposit address).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

_FRAME_OPS = frozenset({"CALL", "CALLCODE", "DELEGATECALL", "STATICCALL", "CREATE", "CREATE2"})
_ADDRESS_MASK = (1 << 160) - 1


@dataclass
class _Frame:
    address: str | None  # whose code runs (its ether moves); None: a contract being created
    transfer: list[Any] | None  # [from, to, wei] moved by the CALL that opened it
    op: str
    made: list[list[Any]] = field(default_factory=list)  # transfers made inside, in execution order


def _word(value: str) -> int:
    return int(value, 16)  # ganache: 64 hex digits; geth: 0x-prefixed, minimal


def _address(value: str) -> str:
    return "0x" + format(_word(value) & _ADDRESS_MASK, "040x")


def internal_transfers(steps: Sequence[dict[str, Any]], *, to: str) -> list[tuple[str, str, int]]:
    """
    (from, to, wei) of each ether transfer a CALL made inside a transaction to `to` that took
    effect if the transaction itself succeeded, in execution order; addresses lower-case 0x hex.

    :raises KeyError, ValueError, TypeError, IndexError: a malformed trace (the caller says so).
    """
    frames = [_Frame(address=to.lower(), transfer=None, op="CALL")]
    for i, step in enumerate(steps):
        depth = int(step["depth"])
        while len(frames) > max(depth, 1):  # back in the caller: the CALL's result is on its stack
            child = frames.pop()
            result = step["stack"][-1]
            if _word(result) == 0:
                continue  # reverted or failed: nothing it moved counts
            if child.op in ("CREATE", "CREATE2"):
                for transfer in child.made:
                    transfer[0] = transfer[0] or _address(result)  # the new contract's address
            frames[-1].made.extend(([child.transfer] if child.transfer else []) + child.made)
        op = step["op"]
        if op not in _FRAME_OPS:
            continue
        stack = step["stack"]
        current = frames[-1].address
        moved = None
        if op == "CALL" and _word(stack[-3]):
            moved = [current, _address(stack[-2]), _word(stack[-3])]
        following = steps[i + 1] if i + 1 < len(steps) else None
        if following is not None and int(following["depth"]) == depth + 1:
            if op in ("CALL", "STATICCALL"):
                address: str | None = _address(stack[-2])
            elif op in ("DELEGATECALL", "CALLCODE"):
                address = current  # the callee's code runs as the caller
            else:
                address = None
            frames.append(_Frame(address=address, transfer=moved, op=op))
        elif moved is not None and following is not None and _word(following["stack"][-1]) != 0:
            frames[-1].made.append(moved)  # no code at the target: done at once, 1 pushed
    # A trace that ends inside a called frame did not return to the transaction: none of it counts.
    return [(str(f), str(t), int(v)) for f, t, v in frames[0].made] if len(frames) == 1 else []
