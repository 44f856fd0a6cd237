"""The dev chains of the run command: blocks on their own, chains kept across restarts, a new chain announced."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chains import devsend
from chains.base import ChainError
from chains.btc import BtcAdapter
from chains.devchain import _coins_update
from chains.devnodes import free_port
from chains.evm import EvmAdapter
from chains.tron import TronAdapter
from coins.models import CoinConfig

BASE_DIR = Path(__file__).resolve().parents[2]
BLOCK_SECONDS = 0.5


class Serve:
    """`python -m chains.devnodes serve` in a subprocess, on free ports, with its state in var_dir."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.ports = {"evm": free_port(), "tron": free_port(), "btc": free_port()}
        self.process: subprocess.Popen | None = None

    def start(self) -> dict:
        ready = self.var_dir / "devchain.ready"
        env = {
            **os.environ,
            "WALLET_VAR_DIR": str(self.var_dir),
            "DEVCHAIN_FILE": str(self.var_dir / "devchain.json"),
            "BTC_RPC_URL": f"http://wallet:test-only-key@127.0.0.1:{self.ports['btc']}/",
        }
        self.process = subprocess.Popen(  # noqa: S603 - our own module
            [
                sys.executable,
                "-m",
                "chains.devnodes",
                "serve",
                f"--evm-port={self.ports['evm']}",
                f"--tron-port={self.ports['tron']}",
                f"--btc-port={self.ports['btc']}",
                f"--block-seconds={BLOCK_SECONDS}",
                "--no-coins-update",
            ],
            cwd=BASE_DIR,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 90
        while not ready.exists():
            assert self.process.poll() is None, self.process.stderr.read()
            assert time.monotonic() < deadline, "the dev chains did not get ready"
            time.sleep(0.2)
        return json.loads(self.process.stdout.readline())  # one JSON line once everything is up

    def stop(self) -> str:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=30) == 0
        assert not (self.var_dir / "devchain.ready").exists()
        return self.process.stderr.read()

    def adapters(self) -> tuple[EvmAdapter, TronAdapter, BtcAdapter]:
        return (
            EvmAdapter(url=f"http://127.0.0.1:{self.ports['evm']}/", connect_timeout=1),
            TronAdapter(url=f"http://127.0.0.1:{self.ports['tron']}/", connect_timeout=1),
            BtcAdapter(url=f"http://wallet:test-only-key@127.0.0.1:{self.ports['btc']}/", connect_timeout=1),
        )


@pytest.mark.slow
def test_the_dev_chains_make_blocks_on_their_own_and_come_back_as_they_were(tmp_path):
    serve = Serve(tmp_path)
    try:
        first = serve.start()
        evm, tron, btc = serve.adapters()
        tips = [a.tip_height() for a in (evm, tron, btc)]
        time.sleep(5 * BLOCK_SECONDS)
        later = [a.tip_height() for a in (evm, tron, btc)]
        faucet = first["evm_funded_account"]
        tron_faucet = devsend.DevChain(chain_id="TRON", recorded=first).sender_address(devsend.FAUCET)
        usdt = (evm.balance(faucet, contract=first["USDT-ERC20"]), tron.balance(tron_faucet, first["USDT-TRC20"]))
    finally:
        serve.stop()

    assert all(b >= a + 2 for a, b in zip(tips, later, strict=True))  # blocks with no transaction sent
    assert first["fresh_chains"] == [] and set(first["chains"]) == {"ETH", "TRON", "BTC"}
    assert all(amount >= 5 * 10**12 for amount in usdt)  # the faucets hold test USDT

    try:
        again = serve.start()
        back = [a.tip_height() for a in serve.adapters()]
        usdt_again = (evm.balance(faucet, contract=again["USDT-ERC20"]), tron.balance(tron_faucet, again["USDT-TRC20"]))
    finally:
        serve.stop()

    assert again["chains"] == first["chains"] and again["fresh_chains"] == []  # the same chains ...
    assert all(b >= a for a, b in zip(later, back, strict=True))  # ... continued, not restarted
    assert (again["USDT-ERC20"], again["USDT-TRC20"]) == (first["USDT-ERC20"], first["USDT-TRC20"])
    assert usdt_again == usdt  # kept, not minted again

    shutil.rmtree(tmp_path / "devchain" / "evm")  # the EVM chain's data is lost
    try:
        fresh = serve.start()
    finally:
        stderr = serve.stop()

    assert fresh["fresh_chains"] == ["ETH"] and fresh["chains"]["ETH"] != first["chains"]["ETH"]
    assert fresh["chains"]["TRON"] == first["chains"]["TRON"]
    assert "NEW DEV CHAIN: ETH" in stderr
    with pytest.raises(ChainError):
        EvmAdapter(url=f"http://127.0.0.1:{serve.ports['evm']}/", connect_timeout=0.5).tip_height()


@pytest.mark.django_db(transaction=True)
def test_coins_update_points_the_usdt_coins_at_the_deployed_contracts():
    _coins_update({"USDT-ERC20": "0x" + "12" * 20, "USDT-TRC20": "TX5UUz5wUDKvwhT1RFn3wDrjjjHDBQnoF7"})

    contracts = dict(CoinConfig.objects.filter(coin_id__startswith="USDT").values_list("coin_id", "contract_address"))
    assert contracts == {"USDT-ERC20": "0x" + "12" * 20, "USDT-TRC20": "TX5UUz5wUDKvwhT1RFn3wDrjjjHDBQnoF7"}
