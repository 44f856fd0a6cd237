"""
Hot surplus to cold on bcoin regtest, from the UTXO set the scanner keeps: the hot address's own
outputs selected and locked in the transaction that stores the signed transaction, change back to
the hot address, moved once (also when the run is repeated), the fee booked as the transaction
leaves it. Keys derived from TEST-ONLY mnemonics.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType
from assets.models import BusinessType, HouseFlow
from chains.testing import btc_adapter, btc_node  # noqa: F401
from coins.models import CoinConfig
from recharges.tests.conftest import deposit_seeds  # noqa: F401
from recharges.tests.helpers import tick
from recharges.tests.test_btc_utxos import BTC, TEST_MNEMONIC_HOT, external, fund
from treasury import sending
from treasury import services as treasury_services
from treasury.models import TransferStatus, TreasuryTransfer
from treasury.tests.helpers import limits_set, operator
from utxos import selectors as utxos_selectors
from utxos.models import BtcUtxo

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def hot(db, settings, deposit_seeds, btc_node, btc_adapter):
    settings.BTC_REGTEST_HRP = "rb"
    settings.SCAN_START_HEIGHTS = {"BTC": btc_adapter.tip_height() + 1}
    settings.TREASURY_AUTO_SEND_COINS = []
    CoinConfig.objects.filter(coin_id="BTC").update(required_confirmations=2)
    signer.hd_wallet_create(chain_id="BTC", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC_HOT, label="test-only")
    (row,) = addresses_services.hot_addresses_create(chain_id="BTC", wallet_type="withdraw")
    fund(btc_adapter, btc_node, [(row.address, 3 * BTC), (row.address, 2 * BTC)])
    btc_node.mine(3)
    tick(btc_adapter, timezone.now(), chain_id="BTC")
    return row


def test_a_btc_surplus_goes_to_cold_once_from_the_utxo_set(hot, btc_node, btc_adapter):
    cold = addresses_services.cold_address_add(chain_id="BTC", address=external())
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=hot, coin_id="BTC", low="1", high="1.5", proposer=alice, approver=bob)

    assert treasury_services.treasury_plan(chain_id="BTC").proposed == 1
    transfer = TreasuryTransfer.objects.get()
    assert transfer.amount == Decimal("3.5")
    treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=bob, remark="policy")
    for _ in range(3):
        sending.treasury_send(chain_id="BTC", adapter=btc_adapter)
        btc_node.mine(1)
        tick(btc_adapter, timezone.now(), chain_id="BTC")
        sending.treasury_confirm(chain_id="BTC", adapter=btc_adapter)

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.CONFIRMED
    cold_outputs = BtcUtxo.objects.filter(address=cold, spent_txid__isnull=True)
    assert [u.value_sats for u in cold_outputs] == [350_000_000]  # moved once
    assert {u.txid for u in cold_outputs} == {transfer.tx_hash}
    fee = transfer.fee_terms["fee_sats"]
    totals = utxos_selectors.utxo_totals_by_address()
    assert totals[hot.id] == 5 * BTC - 350_000_000 - fee  # the change came back to the hot address
    (booked,) = HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE)
    assert booked.amount == -Decimal(fee) / BTC
    assert treasury_services.treasury_plan(chain_id="BTC").proposed == 0  # at its maximum less the fee


def test_outputs_a_signed_payout_locked_are_not_counted_again_as_surplus(hot, btc_node, btc_adapter):
    from utxos import services as utxos_services

    addresses_services.cold_address_add(chain_id="BTC", address=external())
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=hot, coin_id="BTC", low="1", high="2.5", proposer=alice, approver=bob)
    # A payout signed (not mined yet) spends the hot address's 2 BTC output: it leaves with it.
    with transaction.atomic():
        selection = utxos_services.utxos_select_lock(
            wallet_type="withdraw",
            amount_sats=190_000_000,
            payout_ref="payout-in-flight",
            fee_rate_sat_vb=1,
            tip_height=btc_adapter.tip_height(),
            now=timezone.now(),
            min_confirmations=1,
            kinds=(AddressType.HOT,),
            address_id=hot.id,
        )
    assert selection.total_sats == 2 * BTC

    treasury_services.treasury_plan(chain_id="BTC")

    # What stays on the hot address after the payout is 3 BTC: only 0.5 above its maximum may go.
    transfer = TreasuryTransfer.objects.get()
    assert transfer.amount == Decimal("0.5")
