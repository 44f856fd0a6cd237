"""`manage.py demo_deposit` against a real ganache dev node: sent, scanned, confirmed, credited."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from addresses.models import WalletAddress
from assets import selectors as assets_selectors
from chains.devnodes import free_port
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import make_user
from recharges.tests.helpers import available, tick

pytestmark = pytest.mark.slow


@pytest.fixture
def devchain(db, settings, tmp_path, deposit_seeds, evm_node, evm_adapter):  # noqa: F811
    """The dev chain's record as `python -m chains.devnodes serve` writes it, for the module's ganache."""
    path = tmp_path / "devchain.json"
    usdt = evm_node.contracts["USDT"]
    path.write_text(json.dumps({"ETH_RPC_URL": evm_node.url, "USDT-ERC20": usdt}))
    settings.DEVCHAIN_FILE = path
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=usdt)
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=4)
    settings.SCAN_START_HEIGHTS = {"ETH": evm_adapter.tip_height() + 1}
    return path


def demo(**options: str) -> str:
    out = StringIO()
    call_command("demo_deposit", stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


@pytest.mark.parametrize(("coin", "amount"), [("ETH", "1.25"), ("USDT-ERC20", "42.5")])
def test_the_demo_deposit_is_credited_after_a_scan_and_a_confirm(devchain, evm_adapter, now, coin, amount):  # noqa: F811
    user = make_user("newcomer")
    assert not WalletAddress.objects.filter(user=user).exists()
    tip = evm_adapter.tip_height()

    output = demo(user="newcomer", coin=coin, amount=amount)

    address = WalletAddress.objects.get(user=user, chain_id="ETH").address  # allocated by the command
    assert f"to {address}" in output and "GET /api/v1/wallet/recharges" in output
    assert evm_adapter.tip_height() == tip + 4  # the transaction's block and 3 mined on top
    tick(evm_adapter, now)
    record = RechargeRecord.objects.get(user=user)
    assert record.tx_hash in output
    assert (record.coin_id, record.status) == (coin, RechargeStatus.CONFIRMED)
    assert available(user, coin) == Decimal(amount)
    assert assets_selectors.ledger_mismatches() == []


def test_refuses_when_the_dev_chain_is_not_running(devchain, settings, tmp_path):
    make_user("newcomer")
    settings.DEVCHAIN_FILE = tmp_path / "missing.json"
    with pytest.raises(CommandError, match="dev chain is not running"):
        demo(user="newcomer", coin="ETH", amount="1")

    devchain.write_text(json.dumps({"ETH_RPC_URL": f"http://127.0.0.1:{free_port()}/"}))
    settings.DEVCHAIN_FILE = devchain
    with pytest.raises(CommandError, match="dev chain is not running"):
        demo(user="newcomer", coin="ETH", amount="1")


def test_refuses_a_coin_that_is_not_on_the_evm_dev_chain(devchain):
    make_user("newcomer")

    with pytest.raises(CommandError, match="TRX is on TRON, not on the EVM dev chain"):
        demo(user="newcomer", coin="TRX", amount="1")
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address="0x" + "66" * 20)
    with pytest.raises(CommandError, match="which the dev chain did not deploy"):
        demo(user="newcomer", coin="USDT-ERC20", amount="1")
    assert RechargeRecord.objects.count() == 0


def test_refuses_an_unknown_user_without_sending(devchain, evm_adapter):  # noqa: F811
    tip = evm_adapter.tip_height()

    with pytest.raises(CommandError, match="no user named 'nobody'"):
        demo(user="nobody", coin="ETH", amount="1")
    assert evm_adapter.tip_height() == tip
