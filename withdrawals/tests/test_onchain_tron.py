"""TRON withdrawals paid on chain, against the TRON fake (tronpy-signed transactions checked like a
node does, TRX balances and fees kept, TRC20 run on a real EVM). Every key is TEST-ONLY.

TRON transactions carry no nonce but expire: an unmined one past its expiry is signed again.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.utils import timezone
from tronpy.keys import PrivateKey

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType
from chains.base import SignedTx, TxRejected
from chains.testing import tron_adapter, tron_node  # noqa: F401
from coins.models import CoinConfig
from monitoring.models import Alert
from recharges import shortfalls as recharges_shortfalls
from recharges.models import AccountHold
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus
from withdrawals.tests.test_onchain import nonce, signed_tx
from withdrawals.tests.test_withdrawals import hold_withdrawals

pytestmark = pytest.mark.slow
TRX = 10**6


@pytest.fixture
def hot(db, monkeypatch, settings, tmp_path, tron_node):
    """A hot address of the withdraw pool holding 1,000 TRX and 1,000 test USDT-TRC20."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    CoinConfig.objects.filter(chain_id="TRON").update(required_confirmations=2)
    signer.hd_wallet_create(
        chain_id="TRON", purpose=AddressType.HOT, mnemonic=signer.mnemonic_generate(), label="test-only"
    )
    (row,) = addresses_services.hot_addresses_create(chain_id="TRON", wallet_type="withdraw", count=1)
    tron_node.fund(row.address, 1000 * TRX)
    usdt = tron_node.trc20_deploy(owner=row.address, supply=1000 * TRX)
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=usdt)
    return row, usdt


def approved(
    user, amount: str, *, coin_id: str, key: str = "k1", fund: str = "500", to: str | None = None
) -> tuple[WithdrawRecord, str]:
    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id=coin_id),
        amount=Decimal(fund),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{key}",
    )
    to = to or PrivateKey.random().public_key.to_base58check_address()  # TEST-ONLY
    record = withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id=coin_id, to_address=to, amount=amount, idempotency_key=key
    )
    assert record.status == WithdrawStatus.APPROVED
    return record, to


def test_pays_trx_and_usdt_trc20_withdrawals_and_settles_them(hot, user, tron_node, tron_adapter):
    _, usdt = hot
    trx_record, trx_to = approved(user, "50", coin_id="TRX", key="a")
    usdt_record, usdt_to = approved(user, "100", coin_id="USDT-TRC20", key="b")

    paid = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    tron_node.mine(1)
    early = withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)
    tron_node.mine(1)
    done = withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)

    trx_record.refresh_from_db()
    usdt_record.refresh_from_db()
    assert (paid.signed, paid.broadcast, early.completed, done.completed) == (2, 2, 0, 2)
    assert (trx_record.status, usdt_record.status) == (WithdrawStatus.COMPLETED, WithdrawStatus.COMPLETED)
    assert nonce(trx_record) is None
    assert tron_adapter.balance(trx_to) == 49 * TRX  # 50 - fee of 1
    assert tron_adapter.balance(usdt_to, contract=usdt) == 99 * TRX  # 100 - fee of 1 (6 decimals)
    balance = Balance.objects.get(user=user, coin_id="TRX")
    assert (balance.available, balance.frozen) == (Decimal(450), Decimal(0))
    assert assets_selectors.ledger_mismatches() == []


def test_an_expired_unmined_transaction_is_signed_again_and_pays_once(
    hot, user, tron_node, tron_adapter, settings, monkeypatch
):
    settings.WITHDRAW_TRON_EXPIRATION_SECONDS = 2
    monkeypatch.setattr(withdrawals_payout, "TRON_EXPIRY_MARGIN_MS", 500)
    record, to = approved(user, "30", coin_id="TRX")

    sent = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)  # taken by the node...
    record.refresh_from_db()
    first_tx, first_raw = record.tx_hash, signed_tx(record)
    early = withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)
    record.refresh_from_db()
    assert (sent.broadcast, early.waiting, record.tx_hash) == (1, 1, first_tx)  # not expired: kept
    time.sleep(3.0)  # ...but no block is produced before it expires
    tron_node.mine(1)  # the producer drops it; this block is past its expiry

    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)  # signs a new one, sends it
    record.refresh_from_db()
    assert record.tx_hash != first_tx and record.status == WithdrawStatus.PROCESSING
    with pytest.raises(TxRejected, match="expired"):  # the first can never be included now
        tron_adapter.broadcast_irreversible(SignedTx(tx_hash=first_tx, raw=first_raw))
    tron_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert record.status == WithdrawStatus.COMPLETED
    assert tron_adapter.balance(to) == 29 * TRX  # paid once
    assert list(record.audit_logs.order_by("id").values_list("action", flat=True)) == [
        "apply",
        "auto_approve",
        "sign",
        "resign",
        "confirm",
    ]


def test_an_expired_payout_of_a_held_user_is_not_signed_again_until_the_hold_is_lifted(
    hot, user, tron_node, tron_adapter, settings, monkeypatch
):
    settings.WITHDRAW_TRON_EXPIRATION_SECONDS = 2
    monkeypatch.setattr(withdrawals_payout, "TRON_EXPIRY_MARGIN_MS", 500)
    record, to = approved(user, "30", coin_id="TRX")
    withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    record.refresh_from_db()
    first_tx = record.tx_hash
    time.sleep(3.0)
    tron_node.mine(1)  # past its expiry: it can never be included now
    hold_withdrawals(user)  # a reorg hold comes before it is signed again

    held = withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)
    record.refresh_from_db()
    assert (held.waiting, record.status, record.tx_hash) == (1, WithdrawStatus.PROCESSING, first_tx)
    assert Alert.objects.get(kind="WITHDRAW_HELD").subject == f"withdrawal {record.withdraw_no}"

    recharges_shortfalls.account_hold_settle(
        hold_id=AccountHold.objects.get().id,
        operator=_operator(),
        remark="the user paid the shortfall back",
        now=timezone.now(),
    )
    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)  # signs a new one, sends it
    tron_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert record.tx_hash != first_tx and record.status == WithdrawStatus.COMPLETED
    assert tron_adapter.balance(to) == 29 * TRX  # paid once


def test_payouts_not_mined_yet_count_against_the_hot_address(hot, user, tron_node, tron_adapter):
    first, _ = approved(user, "600", coin_id="USDT-TRC20", key="a", fund="600")
    second, _ = approved(user, "600", coin_id="USDT-TRC20", key="b", fund="600")

    # The hot address holds 1,000 USDT: each payout fits alone, not both before the first is mined.
    result = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (result.signed, first.status, second.status) == (1, WithdrawStatus.PROCESSING, WithdrawStatus.APPROVED)
    assert "holds 401 USDT-TRC20 free of its payouts not in a block yet" in result.waits[0]


def test_a_payout_the_hot_address_cannot_cover_is_not_signed(hot, user, tron_adapter):
    hot_row, _ = hot
    record, _ = approved(user, "1200", coin_id="TRX", fund="1500")  # the hot address holds 1,000 TRX

    result = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert (result.signed, record.status, signed_tx(record)) == (0, WithdrawStatus.APPROVED, None)
    assert f"hot address {hot_row.address} holds 1000 TRX free" in result.waits[0]


def test_a_payout_whose_block_was_replaced_at_its_height_is_not_completed(hot, user, tron_node, tron_adapter):
    record, to = approved(user, "40", coin_id="TRX")
    withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    tron_node.mine(1)
    early = withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)  # 1 confirmation of 2

    # Its block is replaced by one without it, while the node's transaction index still names the
    # old block at that height (an index that lags, or a load-balanced API whose backends disagree).
    tron_node.reorg(1, stale_index=True)
    tron_node.mine(2)
    late = withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert (early.waiting, late.completed, late.waiting) == (1, 0, 1)
    assert (record.status, record.block_number) == (WithdrawStatus.PROCESSING, None)
    assert tron_adapter.balance(to) == 0
    balance = Balance.objects.get(user=user, coin_id="TRX")
    assert (balance.available, balance.frozen) == (Decimal(460), Decimal(40))


def _operator():
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user("ops-settler", is_staff=True)
