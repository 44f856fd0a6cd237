"""
Pytest fixtures with local chain dev nodes, for any app's tests (import the ones you need in your
conftest.py: `from chains.testing import evm_node, evm_adapter  # noqa: F401`).

Each node is started once per test module (about 1-3 s) and stopped after it. Every key here is
a TEST-ONLY throwaway key of a local dev chain.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chains.base import SignedTx, UnsignedTx
from chains.btc import BtcAdapter, Utxo
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
        node.contracts["USDT"] = node.trc20_deploy()
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def tron_adapter(tron_node: TronDevNode):
    from chains.tron import TronAdapter

    return TronAdapter(url=tron_node.url, connect_timeout=1, read_timeout=10)


def tron_sign(unsigned: UnsignedTx, private_key: bytes) -> SignedTx:
    """Sign a TronAdapter transfer with tronpy (the signer's job in production)."""
    import json

    from tronpy.keys import PrivateKey

    tx = unsigned.payload.sign(PrivateKey(private_key))
    return SignedTx(tx_hash=tx.txid, raw=json.dumps(tx.to_json()))


# --- helpers for tests that move coins on the dev chains (TEST-ONLY keys) --------------------
def btc_coinbase_utxo(node: BtcDevNode, height: int) -> Utxo:
    """The miner's coinbase output of block `height` (mature once 100 blocks are on top)."""
    from chains.btc import btc_to_sats

    block = node.rpc("getblock", node.rpc("getblockhash", height), True, True)
    coinbase = block["tx"][0]
    out = coinbase["vout"][0]
    assert out["scriptPubKey"]["hex"] == node.miner_script
    return Utxo(
        txid=coinbase["txid"],
        vout=0,
        value_sats=btc_to_sats(out["value"]),
        script_hex=node.miner_script,
        public_key_hex=node.miner_public_key.hex(),
    )


def btc_sign(unsigned: UnsignedTx, private_key: bytes, network: str = "regtest") -> SignedTx:
    """Sign a BtcAdapter transfer with one key (the signer's job in production)."""
    from bitcoinlib.keys import Key

    tx = unsigned.payload
    tx.sign(keys=[Key(private_key, network=network)])
    tx.sign_and_update()  # refreshes txid and vsize after signing
    return SignedTx(tx_hash=tx.txid, raw=tx.raw_hex())


def btc_new_key() -> tuple[bytes, str]:
    """A TEST-ONLY throwaway key: (private key, its P2WPKH scriptPubKey hex)."""
    import coincurve

    from chains.btc import p2wpkh_script

    key = coincurve.PrivateKey()
    return key.secret, p2wpkh_script(key.public_key.format(compressed=True))
