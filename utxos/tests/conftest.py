"""Fixtures of the UTXO set's tests: our addresses and outputs, without a node (see test_btc_node for one)."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime

import pytest

from addresses.models import AddressType, WalletAddress
from chains.btc import p2wpkh_script
from chains.codecs import segwit_encode
from chains.testing import btc_new_key
from utxos.models import BtcUtxo

_txids = itertools.count(1)


def fake_txid() -> str:
    return hashlib.sha256(f"utxo-test-tx-{next(_txids)}".encode()).hexdigest()


@pytest.fixture
def now() -> datetime:
    return datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def own_address(*, kind: AddressType = AddressType.HOT, wallet_type: str = "default") -> WalletAddress:
    """One of our BTC addresses with a TEST-ONLY throwaway public key (no secret stored)."""
    import coincurve

    public = coincurve.PrivateKey().public_key.format(compressed=True)
    return WalletAddress.objects.create(
        coin_id="BTC",
        coin_name="BTC",
        chain_id="BTC",
        address_type=kind,
        address=segwit_encode("bcrt", 0, bytes.fromhex(p2wpkh_script(public)[4:])),
        public_key=public.hex(),
        wallet_type=wallet_type,
    )


def output(address: WalletAddress, value_sats: int, *, height: int = 100, **extra: object) -> BtcUtxo:
    """An output of ours as the scanner records it (a fake txid: no node behind these tests)."""
    return BtcUtxo.objects.create(
        txid=extra.pop("txid", None) or fake_txid(),
        vout=extra.pop("vout", 0),
        value_sats=value_sats,
        script_hex=p2wpkh_script(bytes.fromhex(address.public_key)),
        address=address,
        kind=address.address_type,
        wallet_type=address.wallet_type,
        block_height=height,
        block_hash=hashlib.sha256(f"block {height}".encode()).hexdigest(),
        **extra,
    )


def external_address() -> str:
    return segwit_encode("bcrt", 0, bytes.fromhex(btc_new_key()[1][4:]))
