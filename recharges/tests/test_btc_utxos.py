"""
The exchange's UTXO set kept by the scanner, on a real Bitcoin full node in regtest (bcoin).

Our addresses are derived by the addresses app from TEST-ONLY mnemonics (bcoin's prefix "rb");
transactions are signed with bitcoinlib (through the signer, or with a key derived here) and
checked by the node's consensus code. After each scenario the set is compared with the node's own
block data, read by raw RPC without the adapter.
"""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from addresses import hd, signer
from addresses import selectors as addresses_selectors
from addresses import services as addresses_services
from addresses.models import AddressType, WalletAddress
from chains.base import SignedTx
from chains.btc import BtcAdapter, Utxo
from chains.codecs import segwit_encode
from chains.testing import btc_adapter, btc_coinbase_utxo, btc_new_key, btc_node, btc_sign  # noqa: F401
from coins.models import CoinConfig
from recharges import selectors as recharges_selectors
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import assigned_address, make_user
from recharges.tests.helpers import available, tick
from recharges.utxo_rebuild import utxo_set_rebuild
from utxos import selectors as utxos_selectors
from utxos import services as utxos_services
from utxos.models import BtcUtxo
from utxos.testing import utxo_set_differences

pytestmark = pytest.mark.slow

# TEST-ONLY: the BIP39 reference vector's mnemonic (entropy 7f..7f) as the hot wallet's seed.
TEST_MNEMONIC_HOT = "legal winner thank year wave sausage worth useful legal winner thank yellow"
TEST_MNEMONIC_DEPOSIT = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"
BTC = 100_000_000

# Each funding transaction spends the miner's coinbase of its own early block (mature).
_coinbase_heights = itertools.count(1)


@pytest.fixture
def btc(db, settings, deposit_seeds, btc_node, btc_adapter):  # noqa: F811
    """The scanner starts at the node's next block; deposits need 2 confirmations."""
    settings.SCAN_START_HEIGHTS = {"BTC": btc_adapter.tip_height() + 1}
    CoinConfig.objects.filter(coin_id="BTC").update(required_confirmations=2)
    signer.hd_wallet_create(chain_id="BTC", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC_HOT, label="test-only")
    return btc_adapter


@pytest.fixture
def hot(btc) -> WalletAddress:
    (row,) = addresses_services.hot_addresses_create(chain_id="BTC", wallet_type="default")
    return row


def external() -> str:
    return segwit_encode("rb", 0, bytes.fromhex(btc_new_key()[1][4:]))


def fund(adapter: BtcAdapter, node, payments: list[tuple[str, int]]) -> SignedTx:
    """One transaction from a miner's coinbase paying every (address, satoshis); broadcast, not mined."""
    (to, amount), *more = payments
    unsigned = adapter.build_transfer(
        from_address=node.miner_address,
        to_address=to,
        amount_base_units=amount,
        outputs=more,
        utxos=[btc_coinbase_utxo(node, next(_coinbase_heights))],
        fee_rate_sat_vb=3,
    )
    signed = btc_sign(unsigned, node.miner_private_key)
    assert adapter.broadcast_irreversible(signed) == signed.tx_hash
    return signed


def pay_from_hot(
    adapter: BtcAdapter, *, hot: WalletAddress, to: str, amount: int, ref: str, now: datetime
) -> tuple[SignedTx, utxos_services.UtxoSelection, WalletAddress]:
    """What a payout does: select and lock, change address, sign, record the pending spend; then broadcast."""
    with transaction.atomic():
        selection = utxos_services.utxos_select_lock(
            wallet_type="default",
            amount_sats=amount,
            payout_ref=ref,
            fee_rate_sat_vb=2,
            tip_height=recharges_selectors.scan_height(chain_id="BTC"),
            now=now,
            address_id=hot.id,  # today's signer signs inputs of one address
        )
        change = addresses_services.change_address_take(chain_id="BTC", wallet_type="default", now=now)
        unsigned = adapter.build_transfer(
            from_address=hot.address,
            to_address=to,
            amount_base_units=amount,
            utxos=selection.inputs(),
            change_address=change.address,
            fee_rate_sat_vb=2,
        )
        signed = signer.signer_for("BTC")(unsigned)
        utxos_services.utxos_spend_pending(payout_ref=ref, txid=signed.tx_hash)
    assert adapter.broadcast_irreversible(signed) == signed.tx_hash
    return signed, selection, change


def deposit_key(address: str) -> bytes:
    """The TEST-ONLY private key of one of our deposit addresses, derived from the test mnemonic."""
    from eth_account.hdaccount.mnemonic import Mnemonic

    row = WalletAddress.objects.get(address=address)
    return hd.ExtendedKey.from_seed(Mnemonic.to_seed(TEST_MNEMONIC_DEPOSIT)).derive(row.derivation_path).private_key


def spendable(row: BtcUtxo) -> Utxo:
    """An input spending one of our outputs, with its address's public key."""
    (_address, public_key) = addresses_selectors.public_keys(address_ids=[row.address_id])[row.address_id]
    return Utxo(
        txid=row.txid, vout=row.vout, value_sats=row.value_sats, script_hex=row.script_hex, public_key_hex=public_key
    )


def test_deposits_and_a_hot_top_up_are_recorded_as_outputs_and_only_the_deposits_are_credited(
    btc,
    btc_node,  # noqa: F811
    hot,
    now,
):
    start = btc.tip_height() + 1
    users = [make_user(f"utxo-deposit-{i}") for i in range(2)]
    deposits = [assigned_address(user=u, coin_id="BTC") for u in users]
    funding = fund(btc, btc_node, [(deposits[0], BTC), (deposits[1], 29_000_000), (hot.address, 2 * BTC)])
    btc_node.mine(2)

    tick(btc, now)

    rows = list(BtcUtxo.objects.order_by("vout"))
    assert [(r.txid, r.vout, r.value_sats, r.kind) for r in rows] == [
        (funding.tx_hash, 0, BTC, AddressType.USER_DEPOSIT),
        (funding.tx_hash, 1, 29_000_000, AddressType.USER_DEPOSIT),
        (funding.tx_hash, 2, 2 * BTC, AddressType.HOT),
    ]  # the miner's change (vout 3) is not ours
    assert [r.address.address for r in rows] == [*deposits, hot.address]
    assert all(r.block_height == start and r.spent_txid is None for r in rows)
    credited = RechargeRecord.objects.filter(status=RechargeStatus.CONFIRMED)
    assert sorted(credited.values_list("to_address", flat=True)) == sorted(deposits)
    assert not RechargeRecord.objects.filter(to_address=hot.address).exists()
    assert available(users[0], "BTC") == 1
    holdings = utxos_selectors.utxo_holdings(tip_height=btc.tip_height())
    assert {kind: b.spendable_sats for kind, b in holdings.items()} == {
        AddressType.USER_DEPOSIT: 129_000_000,
        AddressType.HOT: 2 * BTC,
    }
    assert utxo_set_differences(btc_node, btc, start) == []


def test_spends_signed_from_our_addresses_mark_outputs_spent_and_record_their_change(btc, btc_node, hot, now):  # noqa: F811
    start = btc.tip_height() + 1
    deposit = assigned_address(user=make_user("utxo-sweep"), coin_id="BTC")
    fund(btc, btc_node, [(hot.address, BTC), (hot.address, 3 * BTC), (deposit, 70_000_000)])
    btc_node.mine(1)
    tick(btc, now)
    payee = external()

    payout, selection, change = pay_from_hot(btc, hot=hot, to=payee, amount=int(3.5 * BTC), ref="W-1", now=now)
    # A sweep of the deposit to the hot address, signed with bitcoinlib and the deposit's own key.
    (swept,) = BtcUtxo.objects.filter(kind=AddressType.USER_DEPOSIT)
    sweep = btc.build_transfer(
        from_address=deposit,
        to_address=hot.address,
        amount_base_units=69_000_000,
        utxos=[spendable(swept)],
        fee_rate_sat_vb=2,
    )
    sweep_signed = btc_sign(sweep, deposit_key(deposit))
    btc.broadcast_irreversible(sweep_signed)
    btc_node.mine(1)
    tick(btc, now)

    spent_height = btc.tip_height()
    assert len(selection.utxos) == 2
    for row in BtcUtxo.objects.filter(id__in=[u.id for u in selection.utxos]):
        assert (row.spent_txid, row.spent_height, row.pending_txid, row.locked_by) == (
            payout.tx_hash,
            spent_height,
            payout.tx_hash,
            "W-1",
        )
    swept.refresh_from_db()
    assert (swept.spent_txid, swept.spent_height) == (sweep_signed.tx_hash, spent_height)
    change_row = BtcUtxo.objects.get(txid=payout.tx_hash)  # the payee's output is not ours
    assert (change_row.kind, change_row.address_id, change_row.value_sats) == (
        AddressType.CHANGE,
        change.id,
        selection.change_sats,
    )
    assert sorted(BtcUtxo.objects.filter(txid=sweep_signed.tx_hash).values_list("kind", "value_sats")) == [
        (AddressType.HOT, 69_000_000),
        (AddressType.USER_DEPOSIT, 70_000_000 - 69_000_000 - sweep.payload.fee),  # its change
    ]
    pool = utxos_selectors.utxo_balance(tip_height=spent_height, wallet_type="default", kinds=utxos_selectors.HOT_POOL)
    assert pool.spendable_sats == selection.change_sats + 69_000_000
    assert pool.locked_sats == 0  # the locked outputs are spent now
    assert utxo_set_differences(btc_node, btc, start) == []


def test_a_reorg_undoes_a_spend_and_a_receive_and_the_new_branch_records_them_again(btc, btc_node, hot, now):  # noqa: F811
    start = btc.tip_height() + 1
    user = make_user("utxo-reorg")
    deposit = assigned_address(user=user, coin_id="BTC")
    fund(btc, btc_node, [(hot.address, 2 * BTC)])
    btc_node.mine(1)
    tick(btc, now)
    payout, selection, _change = pay_from_hot(btc, hot=hot, to=external(), amount=BTC, ref="W-2", now=now)
    receive = fund(btc, btc_node, [(deposit, 40_000_000)])
    btc_node.mine(1)
    fork_child = btc.tip_height()
    tick(btc, now)
    (spent,) = selection.utxos
    assert BtcUtxo.objects.get(id=spent.id).spent_txid == payout.tx_hash
    change_row, received = BtcUtxo.objects.get(txid=payout.tx_hash), BtcUtxo.objects.get(txid=receive.tx_hash)

    btc_node.rpc("invalidateblock", btc.block_hash(fork_child))  # bcoin also empties its mempool
    tick(btc, now)  # the node's chain is now shorter: the reorg alone must undo the block
    undone = BtcUtxo.objects.get(id=spent.id).spent_txid is None
    orphaned = BtcUtxo.objects.filter(id__in=[change_row.id, received.id], orphaned=True).count()
    btc_node.mine(2)  # a longer branch without them
    tick(btc, now)

    assert (undone, orphaned) == (True, 2)
    row = BtcUtxo.objects.get(id=spent.id)
    assert (row.spent_txid, row.spent_height, row.spent_hash) == (None, None, None)
    assert (row.locked_by, row.pending_txid) == ("W-2", payout.tx_hash)  # still ours to send again
    assert BtcUtxo.objects.get(id=change_row.id).orphaned is True
    assert BtcUtxo.objects.get(id=received.id).orphaned is True
    pool = utxos_selectors.utxo_balance(tip_height=btc.tip_height(), wallet_type="default")
    assert (pool.spendable_sats, pool.locked_sats) == (0, 2 * BTC)
    assert AddressType.USER_DEPOSIT not in utxos_selectors.utxo_holdings(tip_height=btc.tip_height())
    assert utxo_set_differences(btc_node, btc, start) == []

    btc.broadcast_irreversible(payout)  # the same signed transactions, mined on the new branch
    btc.broadcast_irreversible(receive)
    btc_node.mine(1)
    tick(btc, now)

    height, block_hash = btc.tip_height(), btc.block_hash(btc.tip_height())
    assert (BtcUtxo.objects.get(id=spent.id).spent_txid, BtcUtxo.objects.get(id=spent.id).spent_height) == (
        payout.tx_hash,
        height,
    )
    for revived in (change_row, received):
        revived.refresh_from_db()
        assert (revived.orphaned, revived.block_height, revived.block_hash) == (False, height, block_hash)
    assert BtcUtxo.objects.count() == 3  # revived, not inserted again
    assert utxo_set_differences(btc_node, btc, start) == []
    assert utxo_set_rebuild(chain_id="BTC", from_height=start, apply=False, adapter=btc).identical is True


def test_a_rebuild_from_the_first_scanned_block_proves_the_set_and_rebuilds_it_from_nothing(
    btc,
    btc_node,  # noqa: F811
    hot,
    now,
):
    start = btc.tip_height() + 1
    deposit = assigned_address(user=make_user("utxo-rebuild"), coin_id="BTC")
    fund(btc, btc_node, [(hot.address, 2 * BTC), (hot.address, BTC), (deposit, BTC)])
    btc_node.mine(1)
    tick(btc, now)
    pay_from_hot(btc, hot=hot, to=external(), amount=BTC // 2, ref="W-3", now=now)
    btc_node.mine(1)
    middle = btc.tip_height()
    fund(btc, btc_node, [(deposit, 5_000_000)])
    btc_node.mine(1)
    tick(btc, now)
    stored = utxos_selectors.utxos_facts()
    assert len(stored) == 5

    check = utxo_set_rebuild(chain_id="BTC", from_height=start, apply=False, adapter=btc)
    assert check.identical is True and check.outputs == 5
    assert utxo_set_rebuild(chain_id="BTC", from_height=middle, apply=False, adapter=btc).identical is True

    BtcUtxo.objects.all().delete()
    rebuilt = utxo_set_rebuild(chain_id="BTC", from_height=start, apply=True, adapter=btc)

    assert sorted(rebuilt.difference.missing) == sorted(stored)
    assert utxos_selectors.utxos_facts() == stored
    assert utxo_set_rebuild(chain_id="BTC", from_height=start, apply=False, adapter=btc).identical is True
    assert utxo_set_differences(btc_node, btc, start) == []


def test_a_rebuild_finds_and_repairs_a_damaged_set_and_the_command_says_so(btc, btc_node, hot, now, settings):  # noqa: F811
    start = btc.tip_height() + 1
    fund(btc, btc_node, [(hot.address, 2 * BTC), (hot.address, BTC)])
    btc_node.mine(1)
    tick(btc, now)
    pay_from_hot(btc, hot=hot, to=external(), amount=BTC // 2, ref="W-4", now=now)
    btc_node.mine(1)
    tick(btc, now)
    stored = utxos_selectors.utxos_facts()
    spent = BtcUtxo.objects.filter(spent_txid__isnull=False).get()
    kept = BtcUtxo.objects.filter(spent_txid__isnull=True, kind=AddressType.HOT).get()
    BtcUtxo.objects.filter(id=spent.id).update(spent_txid=None, spent_height=None, spent_hash=None)
    BtcUtxo.objects.filter(id=kept.id).update(value_sats=kept.value_sats + 1)
    BtcUtxo.objects.create(
        txid="ee" * 32, vout=0, value_sats=BTC, script_hex=kept.script_hex, address=hot, kind=AddressType.HOT,
        wallet_type="default", block_height=start, block_hash=kept.block_hash,
    )  # fmt: skip
    differences = utxo_set_differences(btc_node, btc, start)
    for damaged in (spent, kept):
        assert any(text.startswith(f"{damaged.txid}:{damaged.vout} ") for text in differences)
    assert f"{'ee' * 32}:0 is in the set, not on the chain" in differences
    settings.BTC_RPC_URL = btc_node.url
    from chains import registry

    registry.adapters_reset()
    try:
        with pytest.raises(CommandError, match="differs"):
            call_command("utxos_rebuild", "--from-height", str(start), "--check")

        call_command("utxos_rebuild", "--from-height", str(start))
        call_command("utxos_rebuild", "--from-height", str(start), "--check")
    finally:
        registry.adapters_reset()

    assert utxos_selectors.utxos_facts() == stored
    assert utxo_set_differences(btc_node, btc, start) == []
    assert BtcUtxo.objects.get(txid="ee" * 32).orphaned is True
    assert BtcUtxo.objects.get(id=spent.id).locked_by == "W-4"  # the payout's lock survives a repair
