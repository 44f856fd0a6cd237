"""
`manage.py demo_setup`, the run command's set-up: hot wallets created and funded on the dev chains
(so that the first withdrawal is paid), clean text for a person, and a new dev chain's reset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.management import call_command
from django.utils import timezone
from eth_account import Account
from tronpy.keys import PrivateKey

from addresses.models import AddressType, WalletAddress
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import BusinessType, Flow, HouseAccount
from chains import devchain, devsend
from chains import registry as chains_registry
from chains.codecs import segwit_encode
from chains.devnodes import btc_start, evm_start, tron_start
from chains.evm import EvmAdapter
from chains.models import NonceCursor
from chains.tron import TronAdapter
from coins.models import CoinConfig
from monitoring import reconciliation
from monitoring.models import ReconciliationStatus
from recharges import services as recharges_services
from recharges.models import RecentBlock, RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.helpers import tick
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import Payout, PayoutStatus, PayoutTx, PayoutTxKind, PayoutTxStatus, WithdrawStatus

BASE_DIR = Path(__file__).resolve().parents[1]


def _json_lines(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        try:
            if isinstance(json.loads(line), dict):
                found.append(line)
        except ValueError:
            pass
    return found


@pytest.mark.slow
def test_prints_text_for_a_person_and_keeps_its_log_lines_in_var_log(tmp_path):
    # A newcomer's machine: no configuration at all, SQLite under var/, no dev chains running.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "WALLET_VAR_DIR": str(tmp_path / "var")}
    manage = [sys.executable, str(BASE_DIR / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True, capture_output=True)  # noqa: S603

    run = subprocess.run([*manage, "demo_setup"], cwd=BASE_DIR, env=env, capture_output=True, text=True)  # noqa: S603

    assert run.returncode == 0, run.stderr
    assert _json_lines(run.stdout) == [] and _json_lines(run.stderr) == []
    assert "Back-office: http://127.0.0.1:8083/admin/" in run.stdout
    assert "Hot wallets created but not funded: the dev chains are not running" in run.stdout
    log = (tmp_path / "var" / "log" / "demo_setup.log").read_text()
    assert "HD seed stored" in log and _json_lines(log)  # the log records went to the file, as JSON


@pytest.fixture(scope="module")
def nodes() -> Iterator[SimpleNamespace]:
    """The three dev nodes making blocks on their own (quickly), faucets funded, as the dev run has them."""
    evm = evm_start()
    tron = btc = None
    stop = threading.Event()
    try:
        tron = tron_start(block_interval=0.3)
        btc = btc_start(miner_key=devsend.BTC_MINER_KEY)
        miner = threading.Thread(target=devchain._miner, kwargs={"btc": btc, "every": 0.3, "stop": stop}, daemon=True)
        miner.start()
        usdt_erc20, usdt_trc20 = evm.token_deploy(), tron.trc20_deploy()
        devchain._faucets_refill(evm, tron, usdt_erc20=usdt_erc20, usdt_trc20=usdt_trc20)
        yield SimpleNamespace(evm=evm, tron=tron, btc=btc, usdt_erc20=usdt_erc20, usdt_trc20=usdt_trc20)
    finally:
        stop.set()
        for node in (btc, tron, evm):
            if node is not None:
                node.stop()


@pytest.fixture
def dev_run(nodes, settings, tmp_path, monkeypatch) -> SimpleNamespace:
    """Settings of the run command pointing at the dev nodes, the development KEK file, the devchain record."""
    monkeypatch.delenv("WALLET_KEK", raising=False)
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-wallet-kek.txt"
    settings.VAR_DIR = tmp_path
    settings.DEVCHAIN_FILE = tmp_path / "devchain.json"
    settings.ETH_RPC_URL, settings.TRON_API_URL, settings.BTC_RPC_URL = nodes.evm.url, nodes.tron.url, nodes.btc.url
    chains_registry.adapters_reset()
    settings.DEVCHAIN_FILE.write_text(
        json.dumps(
            {
                "ETH_RPC_URL": nodes.evm.url,
                "TRON_API_URL": nodes.tron.url,
                "BTC_RPC_URL": f"http://127.0.0.1:{nodes.btc.port}/",
                "USDT-ERC20": nodes.usdt_erc20,
                "USDT-TRC20": nodes.usdt_trc20,
                "block_seconds": 0.3,
                "fresh_chains": [],
            }
        )
    )
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=nodes.usdt_erc20)
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=nodes.usdt_trc20)
    yield SimpleNamespace(
        eth=EvmAdapter(url=nodes.evm.url), tron=TronAdapter(url=nodes.tron.url), record=settings.DEVCHAIN_FILE
    )
    chains_registry.adapters_reset()


def setup(**options: object) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("demo_setup", stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def hot(chain_id: str, pool: str) -> str:
    return WalletAddress.objects.get(address_type=AddressType.HOT, chain_id=chain_id, wallet_type=pool).address


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_creates_and_funds_a_hot_wallet_on_every_chain_once(dev_run, nodes, settings):
    output, _ = setup()
    again, _ = setup()

    eth_hot, tron_hot, btc_hot = hot("ETH", "withdraw"), hot("TRON", "withdraw"), hot("BTC", "withdraw")
    eth_gas, tron_gas = hot("ETH", "gas"), hot("TRON", "gas")
    assert WalletAddress.objects.filter(address_type=AddressType.HOT).count() == 5  # the second run added none
    assert dev_run.eth.balance(eth_hot) == 100 * 10**18
    assert dev_run.eth.balance(eth_hot, contract=nodes.usdt_erc20) == 100_000 * 10**6
    assert dev_run.eth.balance(eth_gas) == 10 * 10**18
    assert dev_run.tron.balance(tron_hot) == 100_000 * 10**6
    assert dev_run.tron.balance(tron_hot, contract=nodes.usdt_trc20) == 100_000 * 10**6
    assert dev_run.tron.balance(tron_gas) == 10_000 * 10**6
    btc = devsend.DevChain(chain_id="BTC", recorded=json.loads(dev_run.record.read_text()), btc_rpc_url=nodes.btc.url)
    funding = json.loads((settings.VAR_DIR / "devchain-funding.json").read_text())
    assert devsend.btc_funded_balance(chain=btc, record=funding, address=btc_hot) == 10 * 10**8
    assert len(funding[btc_hot]) == 1  # funded once, not again on the second run
    for address in (eth_hot, tron_hot, btc_hot, eth_gas, tron_gas):
        assert address in output and address in again


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_funding_is_booked_to_the_house_as_treasury_receipts_and_every_coin_reconciles(dev_run, nodes):
    CoinConfig.objects.update(required_confirmations=2)
    setup()
    nodes.evm.mine(2)  # TRON and BTC make blocks on their own
    time.sleep(1.5)

    for chain_id in ("ETH", "TRON", "BTC"):
        for _ in range(3):
            result = recharges_services.deposits_scan_batch(chain_id=chain_id, now=timezone.now())
            assert result.error is None, result.error
            recharges_services.deposits_confirm(chain_id=chain_id, now=timezone.now())

    treasury = {
        coin_id: assets_selectors.house_balances(coin_id=coin_id).get(HouseAccount.TREASURY)
        for coin_id in ("BTC", "ETH", "USDT-ERC20", "TRX", "USDT-TRC20")
    }
    assert treasury == {  # hot wallets and gas stations, from the faucets: the house's, no user's
        "BTC": Decimal(10),
        "ETH": Decimal(110),
        "USDT-ERC20": Decimal(100_000),
        "TRX": Decimal(110_000),
        "USDT-TRC20": Decimal(100_000),
    }
    assert not Flow.objects.exists()
    for coin_id in treasury:
        run = reconciliation.reconcile_coin(coin_id=coin_id)
        assert (run.status, run.difference, run.error) == (ReconciliationStatus.BALANCED, 0, ""), run.details


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_first_withdrawal_after_the_set_up_is_paid_on_chain(dev_run, django_user_model, settings):
    # The scanner starts before the funding, as the run command's does (from block 0): the BTC hot
    # wallet's funding outputs enter the UTXO set, and the BTC payout spends them.
    btc = chains_registry.adapter_for("BTC")
    settings.SCAN_START_HEIGHTS = {"BTC": btc.tip_height() + 1}
    settings.WITHDRAW_BTC_BATCH_WAIT_SECONDS = 0
    setup()
    tick(btc, timezone.now())
    user = django_user_model.objects.create_user(username="newcomer", password="newcomer-password-1")
    to = {
        "ETH": Account.create().address,
        "TRON": PrivateKey.random().public_key.to_base58check_address(),
        "BTC": segwit_encode("bcrt", 0, os.urandom(20)),
    }
    for coin_id, chain_id, amount in (("ETH", "ETH", "1.5"), ("USDT-TRC20", "TRON", "25"), ("BTC", "BTC", "0.3")):
        coin = CoinConfig.objects.get(coin_id=coin_id)
        assets_services.balance_credit(
            user_id=user.id, coin=coin, amount=Decimal(100), business_type=BusinessType.RECHARGE, biz_ref=coin_id
        )
        withdrawals_services.withdrawal_apply(
            user_id=user.id, coin_id=coin_id, to_address=to[chain_id], amount=amount, idempotency_key=coin_id
        )

    paid = [withdrawals_payout.withdrawals_pay(chain_id=chain_id) for chain_id in ("ETH", "TRON", "BTC")]

    assert [(p.signed, p.broadcast, p.error) for p in paid] == [(1, 1, None), (1, 1, None), (1, 1, None)]
    assert set(user.withdrawrecord_set.values_list("status", flat=True)) == {WithdrawStatus.PROCESSING}


@pytest.mark.django_db(transaction=True)
def test_a_new_dev_chain_resets_what_the_database_remembers_of_the_old_one(dev_run, django_user_model):
    user = django_user_model.objects.create_user(username="newcomer", password="newcomer-password-1")
    ScanCursor.objects.create(chain_id="ETH", height=812, tip_height=812)
    ScanCursor.objects.create(chain_id="TRON", height=90, tip_height=90)
    RecentBlock.objects.create(chain_id="ETH", height=812, hash="0x" + "ab" * 32, parent_hash="0x" + "cd" * 32)
    NonceCursor.objects.create(chain_id="ETH", address="0x" + "11" * 20, next_nonce=7)
    # Payouts of the old chain: a settled one gives its nonce up (the new chain numbers from 0
    # again, and two payouts of an address never share one); an open one keeps it.
    payout = {"chain_id": "ETH", "coin_id": "ETH", "from_address": "0x" + "11" * 20}
    settled = Payout.objects.create(nonce=0, status=PayoutStatus.COMPLETED, **payout)
    PayoutTx.objects.create(
        payout=settled, kind=PayoutTxKind.ORIGINAL, status=PayoutTxStatus.MINED, tx_hash="0x" + "ee" * 32, raw="0x",
        nonce=0,
    )  # fmt: skip
    still_open = Payout.objects.create(nonce=6, status=PayoutStatus.OPEN, **payout)
    common = {"user": user, "coin_name": "x", "from_address": "a", "to_address": "b", "amount": Decimal(1)}
    RechargeRecord.objects.create(recharge_no="R1", coin_id="USDT-ERC20", tx_hash="0x01", **common)
    RechargeRecord.objects.create(recharge_no="R2", coin_id="TRX", tx_hash="02", **common)
    recorded = json.loads(dev_run.record.read_text())
    dev_run.record.write_text(json.dumps({**recorded, "fresh_chains": ["ETH"]}))

    _, said = setup(no_funding=True)
    _, said_again = setup(no_funding=True)

    assert "ETH: the dev chain is NEW" in said and "1 pending deposits marked orphaned" in said
    assert said_again == ""  # reset once
    assert list(ScanCursor.objects.values_list("chain_id", flat=True)) == ["TRON"]
    assert not RecentBlock.objects.filter(chain_id="ETH").exists() and not NonceCursor.objects.exists()
    assert dict(Payout.objects.values_list("id", "nonce")) == {settled.id: None, still_open.id: 6}
    assert PayoutTx.objects.get(payout=settled).nonce == 0  # the history keeps it
    Payout.objects.create(nonce=0, status=PayoutStatus.OPEN, **payout)  # the new chain's first payout
    statuses = dict(RechargeRecord.objects.values_list("recharge_no", "status"))
    assert statuses == {"R1": RechargeStatus.REORGED, "R2": RechargeStatus.PENDING}
    assert json.loads(dev_run.record.read_text())["fresh_chains"] == []
