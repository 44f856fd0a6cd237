"""
`manage.py demo_deposit` on the real dev nodes, for each of the five coins: sent from the dev chain's
TEST-ONLY depositor, then followed as the chain's blocks arrive (pending n/N) until credited.

A background thread plays the dev run: it makes a block and runs the scanner's tick, again and
again, as the dev chains' block producers and Celery beat do. The command itself mines nothing.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from addresses.models import WalletAddress
from assets import selectors as assets_selectors
from chains import devchain, devsend
from chains.btc import BtcAdapter
from chains.devnodes import btc_start, evm_start, free_port, tron_start
from chains.evm import EvmAdapter
from chains.tron import TronAdapter
from coins.models import CoinConfig
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import make_user
from recharges.tests.helpers import available, tick

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CONFIRMATIONS = 3
CHAIN_OF = {"BTC": "BTC", "ETH": "ETH", "USDT-ERC20": "ETH", "TRX": "TRON", "USDT-TRC20": "TRON"}


@pytest.fixture(scope="module")
def nodes() -> Iterator[SimpleNamespace]:
    """The three dev nodes as the dev run has them: test USDT on EVM and TRON, funded TEST-ONLY accounts."""
    evm = evm_start()
    tron = btc = None
    try:
        tron = tron_start()
        btc = btc_start(miner_key=devsend.BTC_MINER_KEY)
        usdt_erc20, usdt_trc20 = evm.token_deploy(), tron.trc20_deploy()
        devchain._faucets_refill(evm, tron, usdt_erc20=usdt_erc20, usdt_trc20=usdt_trc20)
        yield SimpleNamespace(evm=evm, tron=tron, btc=btc, usdt_erc20=usdt_erc20, usdt_trc20=usdt_trc20)
    finally:
        for node in (btc, tron, evm):
            if node is not None:
                node.stop()


@pytest.fixture
def devchains(nodes, deposit_seeds, settings, tmp_path) -> SimpleNamespace:
    """The dev chains' record, coin_config pointing at their tokens, and the scanner starting at their tips."""
    path = tmp_path / "devchain.json"
    path.write_text(
        json.dumps(
            {
                "ETH_RPC_URL": nodes.evm.url,
                "TRON_API_URL": nodes.tron.url,
                "BTC_RPC_URL": f"http://127.0.0.1:{nodes.btc.port}/",
                "USDT-ERC20": nodes.usdt_erc20,
                "USDT-TRC20": nodes.usdt_trc20,
            }
        )
    )
    settings.DEVCHAIN_FILE = path
    settings.BTC_RPC_URL = nodes.btc.url  # carries the node's api key
    settings.SCAN_INTERVAL_SECONDS = 1
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=nodes.usdt_erc20)
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=nodes.usdt_trc20)
    CoinConfig.objects.update(required_confirmations=CONFIRMATIONS)
    adapters = {
        "ETH": EvmAdapter(url=nodes.evm.url, connect_timeout=1, read_timeout=10),
        "TRON": TronAdapter(url=nodes.tron.url, connect_timeout=1, read_timeout=10),
        "BTC": BtcAdapter(url=nodes.btc.url, network="regtest", connect_timeout=1, read_timeout=10),
    }
    settings.SCAN_START_HEIGHTS = {chain: adapter.tip_height() + 1 for chain, adapter in adapters.items()}
    mine = {"ETH": nodes.evm.mine, "TRON": nodes.tron.mine, "BTC": nodes.btc.mine}
    return SimpleNamespace(path=path, adapters=adapters, mine=mine, nodes=nodes)


class DevRun(threading.Thread):
    """A block, then a scanner tick, every `every` seconds on one chain: what the dev run does on its own."""

    def __init__(self, devchains: SimpleNamespace, chain_id: str, every: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.devchains, self.chain_id, self.every = devchains, chain_id, every
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.halt.wait(self.every):
                self.devchains.mine[self.chain_id](1)
                tick(self.devchains.adapters[self.chain_id], timezone.now(), chain_id=self.chain_id)
        except BaseException as exc:  # handed to the test
            self.error = exc
        finally:
            connection.close()

    def __enter__(self) -> DevRun:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.halt.set()
        self.join(timeout=30)
        assert self.error is None, self.error


def demo(**options: object) -> str:
    out = StringIO()
    call_command("demo_deposit", stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


@pytest.mark.parametrize(
    ("coin", "amount"),
    [("BTC", "0.25"), ("ETH", "1.25"), ("USDT-ERC20", "42.5"), ("TRX", "150"), ("USDT-TRC20", "12.5")],
)
def test_a_demo_deposit_of_each_coin_is_followed_from_pending_to_credited(devchains, coin, amount):
    user = make_user("newcomer")
    chain_id = CHAIN_OF[coin]
    tip = devchains.adapters[chain_id].tip_height()

    with DevRun(devchains, chain_id):
        output = demo(user="newcomer", coin=coin, amount=amount, timeout=60)

    address = WalletAddress.objects.get(user=user, chain_id=chain_id).address  # allocated by the command
    record = RechargeRecord.objects.get(user=user)
    pending = [int(n) for n in re.findall(rf"pending (\d+)/{CONFIRMATIONS} confirmations", output)]
    assert f"to {address}" in output and record.tx_hash in output
    assert pending and pending == sorted(pending) and len(set(pending)) == len(pending)  # seen to grow ...
    assert pending[0] < CONFIRMATIONS  # ... from before the confirmations were reached
    assert output.rstrip().splitlines()[-1].startswith(f"credited: {amount} {coin} added to newcomer's")
    assert (record.coin_id, record.status, record.block_number > tip) == (coin, RechargeStatus.CONFIRMED, True)
    assert available(user, coin) == Decimal(amount)
    assert assets_selectors.ledger_mismatches() == []


def test_the_command_mines_nothing_and_times_out_saying_what_to_check(devchains):
    make_user("newcomer")
    tip = devchains.adapters["TRON"].tip_height()

    with pytest.raises(CommandError, match=r"not credited within 1 s .* worker and beat running\?") as raised:
        demo(user="newcomer", coin="TRX", amount="20", timeout=1)

    assert devchains.adapters["TRON"].tip_height() == tip  # no block was made by the demo
    assert "waiting for the next block" in str(raised.value)  # the TRON fake makes blocks only when told here


def test_refuses_when_the_dev_chain_is_not_running(devchains, settings, tmp_path):
    make_user("newcomer")
    settings.DEVCHAIN_FILE = tmp_path / "missing.json"
    with pytest.raises(CommandError, match="dev chains are not running"):
        demo(user="newcomer", coin="ETH", amount="1")

    settings.DEVCHAIN_FILE = devchains.path
    settings.BTC_RPC_URL = f"http://wallet:nope@127.0.0.1:{free_port()}/"
    recorded = json.loads(devchains.path.read_text())
    devchains.path.write_text(json.dumps({**recorded, "BTC_RPC_URL": f"http://127.0.0.1:{free_port()}/"}))
    with pytest.raises(CommandError, match="BTC dev chain is not running"):
        demo(user="newcomer", coin="BTC", amount="1")
    assert RechargeRecord.objects.count() == 0


def test_refuses_a_token_that_is_not_the_dev_chains(devchains):
    make_user("newcomer")
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t")

    with pytest.raises(CommandError, match="which the dev chain did not deploy"):
        demo(user="newcomer", coin="USDT-TRC20", amount="1")


def test_refuses_an_unknown_user_without_sending(devchains):
    tip = devchains.adapters["ETH"].tip_height()

    with pytest.raises(CommandError, match="no user named 'nobody'"):
        demo(user="nobody", coin="ETH", amount="1")
    assert devchains.adapters["ETH"].tip_height() == tip
