"""TronAdapter.tx_status while the chain makes blocks on its own: a successful transaction never reads as failed.

Found by the dev run (blocks every second): the transaction was read while pending (no result yet)
and its info right after it was mined, so a success read as a failure. A withdrawal read that way
would be unfrozen while it was paid. Every key here is a TEST-ONLY key generated here.
"""

from __future__ import annotations

import pytest
from tronpy.keys import PrivateKey

from chains.devnodes import tron_start
from chains.testing import tron_sign
from chains.tron import TronAdapter

pytestmark = pytest.mark.slow


def test_a_transaction_mined_between_two_reads_is_never_reported_failed():
    node = tron_start(block_interval=0.2)  # mined while being read in about one read of four
    try:
        adapter = TronAdapter(url=node.url, connect_timeout=1, read_timeout=10)
        key = PrivateKey.random()
        sender = key.public_key.to_base58check_address()
        node.fund(sender, 10**12)
        seen = []
        for _ in range(30):
            to = PrivateKey.random().public_key.to_base58check_address()
            unsigned = adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=1_000_000)
            txid = adapter.broadcast_irreversible(tron_sign(unsigned, bytes.fromhex(key.hex())))
            while (status := adapter.tx_status(txid)).block_number is None:
                pass  # read again at once, as often as a busy confirmation job might
            seen.append(status.success)
    finally:
        node.stop()

    assert seen == [True] * 30
