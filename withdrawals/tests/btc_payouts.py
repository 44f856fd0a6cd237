"""
Helpers of the BTC payout tests on bcoin regtest: a withdraw-pool hot wallet derived from a
TEST-ONLY mnemonic, funding from the miner's coinbases, withdrawals applied through the service.
Every key here is a TEST-ONLY throwaway key of a local dev chain.
"""

from __future__ import annotations

import itertools
from decimal import Decimal

from django.utils import timezone

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType, WalletAddress
from assets import services as assets_services
from assets.models import BusinessType
from chains.base import SignedTx
from chains.btc import BtcAdapter, btc_to_sats
from chains.codecs import segwit_encode
from chains.testing import btc_coinbase_utxo, btc_new_key, btc_sign
from coins.models import CoinConfig
from recharges.tests.helpers import tick
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord

# TEST-ONLY: the BIP39 reference vector's mnemonic (entropy 80..80) as the hot wallet's seed.
TEST_MNEMONIC_HOT = "letter advice cage absurd amount doctor acoustic avoid letter advice cage above"
BTC = 100_000_000
POOL = "withdraw"

# Each funding transaction spends the miner's coinbase of its own early block (mature, 50 BTC).
_coinbase_heights = itertools.count(1)


def hot_wallet(settings) -> WalletAddress:
    """The withdraw pool's first hot address (settings: the test's, with the deposit seeds' KEK)."""
    settings.WITHDRAW_HOT_WALLET_TYPE = POOL
    CoinConfig.objects.filter(coin_id="BTC").update(required_confirmations=2)
    signer.hd_wallet_create(chain_id="BTC", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC_HOT, label="test-only")
    (row,) = addresses_services.hot_addresses_create(chain_id="BTC", wallet_type=POOL)
    return row


def external() -> str:
    """A fresh outside address (bcoin's regtest prefix) whose key nobody keeps."""
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


def fund_and_scan(adapter: BtcAdapter, node, payments: list[tuple[str, int]]) -> SignedTx:
    """Fund, mine one block and let the scanner record the outputs in the UTXO set."""
    signed = fund(adapter, node, payments)
    node.mine(1)
    tick(adapter, timezone.now())
    return signed


def apply(user, amount: str, *, key: str, to: str | None = None, fund_amount: str = "10") -> WithdrawRecord:
    """A BTC withdrawal of `amount` to a fresh outside address, the user credited first."""
    coin = CoinConfig.objects.get(coin_id="BTC")
    assets_services.balance_credit(
        user_id=user.id,
        coin=coin,
        amount=Decimal(fund_amount),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{key}",
    )
    return withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id="BTC", to_address=to or external(), amount=amount, idempotency_key=key
    )


def paid_to(node, txid: str, address: str, adapter: BtcAdapter) -> int:
    """Satoshis the node's copy of transaction txid pays to address."""
    script = adapter.match_key(address)
    tx = node.rpc("getrawtransaction", txid, True)
    return sum(btc_to_sats(out["value"]) for out in tx["vout"] if out["scriptPubKey"]["hex"] == script)
