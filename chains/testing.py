"""
Pytest fixtures with local chain dev nodes, for any app's tests (import the ones you need in your
conftest.py: `from chains.testing import evm_node, evm_adapter  # noqa: F401`).

Each node is started once per test module (about 1-3 s) and stopped after it. Every key here is
a TEST-ONLY throwaway key of a local dev chain.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chains.btc import BtcAdapter
from chains.devnodes import BtcDevNode, EvmDevNode, TronDevNode, btc_start, evm_start, tron_start
from chains.evm import EvmAdapter


@pytest.fixture(scope="module")
def evm_node() -> Iterator[EvmDevNode]:
    """ganache with the test USDT deployed (evm_node.contracts["USDT"]), 1M USDT minted to accounts[0]."""
    node = evm_start()
    try:
        usdt = node.token_deploy()
        node.contracts["USDT"] = usdt
        node.transact(node.contract(usdt).functions.mint(node.accounts[0].address, 10**6 * 10**6))
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def evm_adapter(evm_node: EvmDevNode) -> EvmAdapter:
    return EvmAdapter(url=evm_node.url, connect_timeout=1, read_timeout=10)


@pytest.fixture(scope="module")
def btc_node() -> Iterator[BtcDevNode]:
    """bcoin regtest with 500 blocks mined to btc_node.miner_address (segwit active)."""
    node = btc_start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def btc_adapter(btc_node: BtcDevNode) -> BtcAdapter:
    return BtcAdapter(url=btc_node.url, network="regtest", connect_timeout=1, read_timeout=10, fee_fallback_sat_vb=2)


@pytest.fixture(scope="module")
def tron_node() -> Iterator[TronDevNode]:
    """The TRON fake with its own ganache behind it; the test USDT TRC20 in tron_node.contracts["USDT"]."""
    node = tron_start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def tron_adapter(tron_node: TronDevNode):
    from chains.tron import TronAdapter

    return TronAdapter(url=tron_node.url, connect_timeout=1, read_timeout=10)
