"""chains.evm_trace over opcode traces in the struct logger's format (what geth and ganache answer
to debug_traceTransaction): which ether a contract moved took effect. The scanner's use of it
against ganache is in recharges/tests/test_evm_node.py."""

from __future__ import annotations

from chains.evm_trace import internal_transfers

TOP = "0x" + "aa" * 20
CALLEE = "0x" + "bb" * 20
EOA = "0x" + "cc" * 20
EOA2 = "0x" + "dd" * 20


def word(value: int | str, *, geth: bool = False) -> str:
    number = int(value, 16) if isinstance(value, str) else value
    return hex(number) if geth else format(number, "064x")


def call(depth: int, to: str, wei: int, op: str = "CALL", **kw) -> dict:
    # CALL's stack, top last: ... value, address, gas (DELEGATECALL / STATICCALL: no value).
    stack = (
        [word(0, **kw)] * 4
        + ([word(wei, **kw)] if op in ("CALL", "CALLCODE") else [])
        + [word(to, **kw), word(50_000, **kw)]
    )
    return {"depth": depth, "op": op, "stack": stack}


def after(depth: int, result: int, **kw) -> dict:
    """The caller's next step: the CALL's result (1 or 0) on top of its stack."""
    return {"depth": depth, "op": "SWAP1", "stack": [word(result, **kw)]}


def step(depth: int, op: str = "PUSH1") -> dict:
    return {"depth": depth, "op": op, "stack": []}


def test_a_call_with_value_to_an_account_without_code_counts_when_it_returned_1():
    steps = [step(1), call(1, EOA, 5), after(1, 1), call(1, EOA2, 7), after(1, 0), step(1, "STOP")]

    assert internal_transfers(steps, to=TOP) == [(TOP, EOA, 5)]


def test_a_frame_that_returned_keeps_what_it_moved_in_order_and_one_that_reverted_loses_it():
    steps = [
        call(1, CALLEE, 9), step(2), call(2, EOA, 4), after(2, 1), step(2, "RETURN"),  # kept: 9 then 4
        after(1, 1),
        call(1, CALLEE, 3), step(2), call(2, EOA2, 2), after(2, 1), step(2, "REVERT"),  # the frame reverted
        after(1, 0),
        step(1, "STOP"),
    ]  # fmt: skip

    assert internal_transfers(steps, to=TOP) == [(TOP, CALLEE, 9), (CALLEE, EOA, 4)]


def test_a_delegatecall_moves_the_callers_ether_and_a_staticcall_moves_none():
    steps = [
        call(1, CALLEE, 0, op="DELEGATECALL"), step(2), call(2, EOA, 6), after(2, 1), step(2, "RETURN"),
        after(1, 1),
        call(1, CALLEE, 0, op="STATICCALL"), step(2), step(2, "RETURN"), after(1, 1),
        step(1, "STOP"),
    ]  # fmt: skip

    assert internal_transfers(steps, to=TOP) == [(TOP, EOA, 6)]


def test_geths_0x_stack_words_read_the_same():
    steps = [step(1), call(1, EOA, 5, geth=True), after(1, 1, geth=True), step(1, "STOP")]

    assert internal_transfers(steps, to=TOP.upper().replace("0X", "0x")) == [(TOP, EOA, 5)]


def test_a_trace_that_ends_inside_a_called_frame_counts_nothing():
    steps = [call(1, EOA, 5), after(1, 1), call(1, CALLEE, 1), step(2), step(2)]

    assert internal_transfers(steps, to=TOP) == []
