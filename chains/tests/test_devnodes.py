"""The dev-chain command of the run command: starts, deploys the test USDT, records it, stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chains.base import ChainError
from chains.devnodes import _coins_update, free_port
from chains.evm import EvmAdapter
from chains.tron import TronAdapter
from coins.models import CoinConfig

BASE_DIR = Path(__file__).resolve().parents[2]


def test_serve_deploys_the_test_usdt_records_it_and_stops_its_nodes(tmp_path):
    evm_port, tron_port = free_port(), free_port()
    env = {**os.environ, "DEVCHAIN_FILE": str(tmp_path / "devchain.json"), "WALLET_VAR_DIR": str(tmp_path)}
    process = subprocess.Popen(  # noqa: S603 - our own module
        [
            sys.executable,
            "-m",
            "chains.devnodes",
            "serve",
            f"--evm-port={evm_port}",
            f"--tron-port={tron_port}",
            "--btc-port=0",
            "--no-coins-update",
            "--tron-block-interval=0.2",
        ],
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()  # one JSON line once everything is up
        recorded = json.loads((tmp_path / "devchain.json").read_text())
        evm = EvmAdapter(url=f"http://127.0.0.1:{evm_port}/")
        tron = TronAdapter(url=f"http://127.0.0.1:{tron_port}/")
        height = tron.tip_height()
        time.sleep(0.6)

        assert json.loads(line) == recorded
        assert evm.balance(recorded["evm_funded_account"], contract=recorded["USDT-ERC20"]) == 10**12
        assert tron.balance(recorded["USDT-TRC20"], contract=recorded["USDT-TRC20"]) == 0
        assert tron.tip_height() > height  # the fake produces blocks on its own
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0

    with pytest.raises(ChainError):
        EvmAdapter(url=f"http://127.0.0.1:{evm_port}/", connect_timeout=0.5).tip_height()


@pytest.mark.django_db(transaction=True)
def test_coins_update_points_the_usdt_coins_at_the_deployed_contracts():
    _coins_update({"USDT-ERC20": "0x" + "12" * 20, "USDT-TRC20": "TX5UUz5wUDKvwhT1RFn3wDrjjjHDBQnoF7"})

    contracts = dict(CoinConfig.objects.filter(coin_id__startswith="USDT").values_list("coin_id", "contract_address"))
    assert contracts == {"USDT-ERC20": "0x" + "12" * 20, "USDT-TRC20": "TX5UUz5wUDKvwhT1RFn3wDrjjjHDBQnoF7"}
