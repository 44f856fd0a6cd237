"""TRON payout fees against the TRON fake: a TRC20 transfer's fee_limit from its energy estimate
within a ceiling; bandwidth and a new recipient's activation counted before signing. Every key is
TEST-ONLY."""

# ruff: noqa: F811 - pytest fixtures imported from other modules are named as test parameters

from __future__ import annotations

import json

import pytest
from tronpy.keys import PrivateKey

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from chains.testing import tron_adapter, tron_node  # noqa: F401
from chains.tron_fake import CREATE_ACCOUNT_FEE_SUN, CREATE_NEW_ACCOUNT_FEE_SUN, ENERGY_FEE_SUN
from coins.models import CoinConfig
from monitoring.models import Alert
from withdrawals import payout as withdrawals_payout
from withdrawals.models import WithdrawStatus
from withdrawals.tests.test_onchain_tron import approved, hot  # noqa: F401

pytestmark = pytest.mark.slow
TRX = 10**6
ACTIVATION = CREATE_NEW_ACCOUNT_FEE_SUN + CREATE_ACCOUNT_FEE_SUN  # 1.1 TRX


@pytest.fixture
def lean_hot(db, monkeypatch, settings, tmp_path, tron_node):
    """A hot address of the withdraw pool with no TRX yet: each test funds it to the sun."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    CoinConfig.objects.filter(chain_id="TRON").update(required_confirmations=1)
    signer.hd_wallet_create(
        chain_id="TRON", purpose=AddressType.HOT, mnemonic=signer.mnemonic_generate(), label="test-only"
    )
    (row,) = addresses_services.hot_addresses_create(chain_id="TRON", wallet_type="withdraw", count=1)
    return row


def _existing_account(tron_node) -> str:
    address = PrivateKey.random().public_key.to_base58check_address()  # TEST-ONLY
    tron_node.fund(address, 1)
    return address


def test_a_trx_payout_to_an_existing_account_needs_only_the_amount_while_its_bandwidth_is_free(
    lean_hot, user, tron_node, tron_adapter
):
    tron_node.fund(lean_hot.address, 19 * TRX + TRX // 2)  # 19 TRX to pay, half a TRX to spare
    record, to = approved(user, "20", coin_id="TRX", to=_existing_account(tron_node))

    paid = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    tron_node.mine(1)
    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert (paid.signed, paid.waits, record.status) == (1, (), WithdrawStatus.COMPLETED)
    assert tron_adapter.balance(to) == 19 * TRX + 1
    assert tron_adapter.balance(lean_hot.address) == TRX // 2  # the bandwidth came out of the free allowance


def test_a_trx_payout_to_a_new_account_counts_its_activation_before_signing(lean_hot, user, tron_node, tron_adapter):
    tron_node.fund(lean_hot.address, 19 * TRX + ACTIVATION - 1)  # one sun short of amount and activation
    record, to = approved(user, "20", coin_id="TRX")  # to a fresh address: no account yet

    short = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    record.refresh_from_db()
    assert (short.signed, record.status) == (0, WithdrawStatus.APPROVED)
    assert "activation of the new recipient account" in short.waits[0] and "0.000001 TRX short" in short.waits[0]
    assert Alert.objects.get(kind="WITHDRAW_HOT_WALLET_SHORT").subject == f"withdrawal {record.withdraw_no}"

    tron_node.fund(lean_hot.address, 1)
    paid = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    tron_node.mine(1)
    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert (paid.signed, record.status) == (1, WithdrawStatus.COMPLETED)
    assert tron_adapter.balance(to) == 19 * TRX
    assert tron_adapter.balance(lean_hot.address) == 0  # amount and activation, to the sun


def test_a_trc20_payout_sets_its_fee_limit_from_the_energy_estimate(hot, user, tron_node, tron_adapter, settings):
    record, _ = approved(user, "100", coin_id="USDT-TRC20")

    withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    tron_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert record.status == WithdrawStatus.COMPLETED
    info = tron_node.post("/wallet/gettransactioninfobyid", {"value": record.tx_hash})
    fee_limit = json.loads(_signed_raw(record))["raw_data"]["fee_limit"]
    used = info["receipt"]["energy_usage_total"] * ENERGY_FEE_SUN
    # Enough for what it burnt, with the margin; far below the 30 TRX a fixed limit would allow.
    assert used <= fee_limit <= used * 2 and fee_limit < settings.TRON_FEE_LIMIT_SUN


def test_a_trc20_payout_whose_energy_would_cost_more_than_the_ceiling_waits_with_an_alert(
    hot, user, tron_adapter, settings
):
    settings.TRON_FEE_LIMIT_SUN = ENERGY_FEE_SUN * 1000  # far below a transfer's energy
    record, _ = approved(user, "100", coin_id="USDT-TRC20")

    result = withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)

    record.refresh_from_db()
    assert (result.signed, result.waiting, record.status) == (0, 1, WithdrawStatus.APPROVED)
    alert = Alert.objects.get(kind="WITHDRAW_FEE_CEILING")
    assert alert.subject == f"withdrawal {record.withdraw_no}" and "TRON_FEE_LIMIT_SUN" in alert.message


def _signed_raw(record) -> str:
    from withdrawals.models import PayoutTx

    return PayoutTx.objects.get(tx_hash=record.tx_hash).raw
