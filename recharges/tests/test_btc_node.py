"""
Deposits found on a real Bitcoin full node in regtest (bcoin from npm, started once for this module).

Deposit addresses are derived by the addresses app (bcoin's regtest prefix "rb"); transactions are
built and signed with bitcoinlib and checked by the node's consensus code; matching is by
scriptPubKey. Every key here is a TEST-ONLY throwaway key of a local regtest chain.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow
from chains.base import SignedTx
from chains.testing import btc_adapter, btc_coinbase_utxo, btc_node, btc_sign  # noqa: F401
from coins.models import CoinConfig
from monitoring.models import Alert, Severity
from recharges import services as recharges_services
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import assigned_address, make_user
from recharges.tests.helpers import available, net_recharged, tick

pytestmark = pytest.mark.slow

# Each payment spends the miner's coinbase of its own early block (mature: 500 blocks on top).
_coinbase_heights = itertools.count(1)

# Amounts a float would turn into the wrong number of satoshis (0.29 BTC * 1e8 = 28999999.99...).
AMOUNTS = [100_000_001, 29_000_000, 2_112_345_678]


@pytest.fixture
def btc(db, settings, deposit_seeds, btc_node, btc_adapter):  # noqa: F811
    # The module's node is shared: each test's scanner starts at the node's next block.
    settings.SCAN_START_HEIGHTS = {"BTC": btc_adapter.tip_height() + 1}
    CoinConfig.objects.filter(coin_id="BTC").update(required_confirmations=2)
    return btc_adapter


def _pay(btc_adapter, btc_node, payments: list[tuple[str, int]]) -> SignedTx:  # noqa: F811
    """Sign one transaction from a miner's coinbase paying every (address, satoshis) and broadcast it."""
    (to, amount), *more = payments
    unsigned = btc_adapter.build_transfer(
        from_address=btc_node.miner_address,
        to_address=to,
        amount_base_units=amount,
        outputs=more,
        utxos=[btc_coinbase_utxo(btc_node, next(_coinbase_heights))],
        fee_rate_sat_vb=3,
    )
    signed = btc_sign(unsigned, btc_node.miner_private_key)
    assert btc_adapter.broadcast_irreversible(signed) == signed.tx_hash
    return signed


def test_several_outputs_of_one_transaction_are_credited_once_each_after_confirmations(btc, btc_node, now):  # noqa: F811
    users = [make_user(f"btc-multi-{i}") for i in range(3)]
    addresses = [assigned_address(user=u, coin_id="BTC") for u in users]
    assert all(a.startswith("rb1q") for a in addresses)
    signed = _pay(btc, btc_node, list(zip(addresses, AMOUNTS, strict=True)))
    btc_node.mine(1)
    height = btc.tip_height()

    tick(btc, now)

    records = list(RechargeRecord.objects.filter(tx_hash=signed.tx_hash).order_by("log_index"))
    assert [(r.user_id, r.log_index, r.status) for r in records] == [
        (u.id, i, RechargeStatus.PENDING) for i, u in enumerate(users)
    ]
    assert [r.amount for r in records] == [Decimal(a) / 10**8 for a in AMOUNTS]
    assert all(r.block_number == height and r.to_address == a for r, a in zip(records, addresses, strict=True))
    assert available(users[0], "BTC") == 0

    btc_node.mine(1)  # the second confirmation
    tick(btc, now)
    tick(btc, now)  # and another tick: nothing more
    again = recharges_services.deposits_rescan_range(
        chain_id="BTC", from_height=height, to_height=height, now=now, adapter=btc
    )

    assert again.blocks == 1 and again.deposits == 0  # the same block scanned twice adds nothing
    assert RechargeRecord.objects.filter(tx_hash=signed.tx_hash, status=RechargeStatus.CONFIRMED).count() == 3
    assert [available(u, "BTC") for u in users] == [Decimal("1.00000001"), Decimal("0.29"), Decimal("21.12345678")]
    assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 3
    assert assets_selectors.ledger_mismatches() == []


def test_invalidateblock_orphans_a_credited_and_a_pending_deposit_then_the_rescan_recredits_the_re_mined_one(
    btc,
    btc_node,  # noqa: F811
    now,
):
    user = make_user("btc-reorg")
    address = assigned_address(user=user, coin_id="BTC")
    credited = _pay(btc, btc_node, [(address, 70_000_000)])
    btc_node.mine(1)
    fork_child = btc.tip_height()
    tick(btc, now)
    btc_node.mine(1)
    tick(btc, now)
    assert available(user, "BTC") == Decimal("0.7")
    pending = _pay(btc, btc_node, [(address, 20_000_000)])
    btc_node.mine(1)
    tick(btc, now)
    assert RechargeRecord.objects.get(tx_hash=pending.tx_hash).status == RechargeStatus.PENDING

    btc_node.rpc("invalidateblock", btc.block_hash(fork_child))  # both deposits' blocks leave the best chain
    btc_node.mine(4)  # a longer branch without them (bcoin empties its mempool on invalidateblock)
    tick(btc, now)

    first, second = (RechargeRecord.objects.get(tx_hash=s.tx_hash) for s in (credited, pending))
    assert (first.status, second.status) == (RechargeStatus.REORGED, RechargeStatus.REORGED)
    assert available(user, "BTC") == 0  # the credited one was reversed
    assert Flow.objects.get(business_type=BusinessType.REORG_REVERSAL).amount == Decimal("-0.7")
    assert Alert.objects.get(kind="DEEP_REORG").severity == Severity.CRITICAL
    assert assets_selectors.ledger_mismatches() == []

    btc.broadcast_irreversible(credited)  # the same signed transaction is mined again on the new branch
    btc_node.mine(2)
    tick(btc, now)
    tick(btc, now)

    first.refresh_from_db()
    assert (first.status, first.generation) == (RechargeStatus.CONFIRMED, 1)
    assert RechargeRecord.objects.get(tx_hash=pending.tx_hash).status == RechargeStatus.REORGED
    assert available(user, "BTC") == Decimal("0.7") == net_recharged(user, "BTC")
    assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 2
    assert RechargeRecord.objects.count() == 2
    assert assets_selectors.ledger_mismatches() == []
