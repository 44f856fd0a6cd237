"""
The README's first command, run as a newcomer would: from a clean clone, with no configuration
(SQLite, the filesystem broker, embedded defaults), through the HTTP API and the real processes.

It walks the loop twice, with a stop (Ctrl-C) and a second start in between: a deposit on each
chain credited (demo_deposit), a withdrawal of each coin auto-approved and paid on chain, a large
one approved by an auditor in the admin and paid. The second start must find the chains the
database remembers (no REORG_TOO_DEEP) and credit deposits again. Only `.venv` and `node_modules`
are shared with this checkout (symlinked), and the ports are free ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from eth_account import Account
from tronpy.keys import PrivateKey

from chains.btc import BtcAdapter, btc_to_sats
from chains.codecs import segwit_encode
from chains.devnodes import free_port
from chains.evm import EvmAdapter
from chains.tron import TronAdapter

pytestmark = pytest.mark.slow

BASE_DIR = Path(__file__).resolve().parents[1]
START_TIMEOUT = 300
LOOP_TIMEOUT = 240
# Paid on chain by the beat (BTC from the hot wallet's UTXOs, which the scanner found in the funding).
PAID_ON_CHAIN = ("BTC", "ETH", "USDT-ERC20", "TRX", "USDT-TRC20")


def _first_command() -> str:
    readme = (BASE_DIR / "README.md").read_text()
    return re.search(r"```sh\n(.+?)\n```", readme, re.S).group(1).strip()


class FirstRun:
    """A clean clone of this checkout's HEAD, and its run command started and stopped like a person does."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "wallet"
        git = shutil.which("git") or "git"
        head = subprocess.run(  # noqa: S603
            [git, "rev-parse", "HEAD"], cwd=BASE_DIR, check=True, capture_output=True, text=True
        ).stdout.strip()
        subprocess.run([git, "clone", "-q", "--no-checkout", str(BASE_DIR), str(self.dir)], check=True)  # noqa: S603
        subprocess.run([git, "checkout", "-q", head], cwd=self.dir, check=True)  # noqa: S603
        for shared in (".venv", "node_modules"):
            (self.dir / shared).symlink_to((BASE_DIR / shared).resolve())
        self.ports = {name: free_port() for name in ("web", "evm", "tron", "btc")}
        self.base = f"http://127.0.0.1:{self.ports['web']}"
        # A newcomer's shell: none of the variables CI sets for the test suite (DATABASE_URL, REDIS_URL,
        # RABBITMQ_URL, CELERY_BROKER_URL...); free ports and short intervals so that the loop is quick.
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", str(root)),
            "LANG": "C.UTF-8",
            "PORT": str(self.ports["web"]),
            "DEVCHAIN_EVM_PORT": str(self.ports["evm"]),
            "DEVCHAIN_TRON_PORT": str(self.ports["tron"]),
            "DEVCHAIN_BTC_PORT": str(self.ports["btc"]),
            "DEVCHAIN_BLOCK_SECONDS": "1",
            "SCAN_INTERVAL_SECONDS": "2",
        }
        self.process: subprocess.Popen | None = None
        self.runs = 0

    @property
    def output(self) -> str:
        return (self.dir.parent / f"run-{self.runs}.log").read_text(errors="replace")

    def start(self) -> None:
        self.runs += 1
        log = (self.dir.parent / f"run-{self.runs}.log").open("w")
        self.process = subprocess.Popen(  # noqa: S603 - the README's command
            _first_command().split(),
            cwd=self.dir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
        deadline = time.monotonic() + START_TIMEOUT
        while "Press Ctrl-C to stop" not in self.output:
            assert self.process.poll() is None, f"the run command exited:\n{self.output[-4000:]}"
            assert time.monotonic() < deadline, f"not up after {START_TIMEOUT} s:\n{self.output[-4000:]}"
            time.sleep(1)
        assert requests.get(f"{self.base}/api/v1/wallet/health", timeout=5).json()["status"] == "ok"

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT to the run command's process group; return its exit code."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=120)
        finally:
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGINT)
                self.process.wait(timeout=60)
            with contextlib.suppress(OSError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def manage(self, *args: str, nodes: bool = False) -> subprocess.Popen:
        env = dict(self.env)
        if nodes:  # the node addresses the run command gives its own processes
            env["ETH_RPC_URL"] = f"http://127.0.0.1:{self.ports['evm']}/"
            env["TRON_API_URL"] = f"http://127.0.0.1:{self.ports['tron']}/"
            env["BTC_RPC_URL"] = f"http://wallet:devchain-only-api-key@127.0.0.1:{self.ports['btc']}/"
        return subprocess.Popen(  # noqa: S603
            [str(self.dir / ".venv" / "bin" / "python"), "manage.py", *args],
            cwd=self.dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def credentials(self) -> dict[str, str]:
        lines = (self.dir / "var" / "demo-credentials.txt").read_text().splitlines()
        return dict(line.split(" ", 1) for line in lines)

    def devchain(self) -> dict[str, Any]:
        return json.loads((self.dir / "var" / "devchain.json").read_text())

    def alerts(self) -> list[tuple[str, str, str]]:
        """Every alert raised: kind, subject and message (which says what failed, when one does)."""
        db = sqlite3.connect(f"file:{self.dir / 'var' / 'wallet.sqlite3'}?mode=ro", uri=True)
        try:
            return list(db.execute("SELECT kind, subject, message FROM monitoring_alert ORDER BY id"))
        finally:
            db.close()


class Api:
    """The demo user's side of the HTTP API."""

    def __init__(self, base: str, password: str) -> None:
        self.base = base
        token = requests.post(
            f"{base}/api/v1/auth/token", json={"username": "demo", "password": password}, timeout=10
        ).json()["access"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str) -> Any:
        response = requests.get(f"{self.base}/api/v1/{path}", headers=self.headers, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def withdraw(self, coin: str, to_address: str, amount: str) -> dict[str, Any]:
        body = {"coin": coin, "to_address": to_address, "amount": amount, "idempotency_key": uuid.uuid4().hex}
        response = requests.post(f"{self.base}/api/v1/wallet/withdrawals", json=body, headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    def withdrawals(self) -> dict[str, dict[str, Any]]:
        return {w["withdraw_no"]: w for w in self.get("wallet/withdrawals?page_size=200")["results"]}


def admin_approve(base: str, password: str, withdraw_no: str) -> None:
    """An auditor logs in to the admin and approves one withdrawal with its action (CSRF tokens and all)."""
    session = requests.Session()

    def csrf(html: str) -> str:
        return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)

    login = session.get(f"{base}/admin/login/", timeout=10)
    session.post(
        f"{base}/admin/login/?next=/admin/",
        data={"username": "admin", "password": password, "csrfmiddlewaretoken": csrf(login.text), "next": "/admin/"},
        timeout=10,
    ).raise_for_status()
    listing = session.get(f"{base}/admin/withdrawals/withdrawrecord/", params={"q": withdraw_no}, timeout=10)
    assert withdraw_no in listing.text, "the auditor does not see the withdrawal (not logged in?)"
    [row_id] = re.findall(r'name="_selected_action" value="(\d+)"', listing.text)
    chosen = {"action": "approve", "_selected_action": row_id}
    confirm = session.post(
        f"{base}/admin/withdrawals/withdrawrecord/",
        data={**chosen, "csrfmiddlewaretoken": csrf(listing.text)},
        timeout=10,
    )
    done = session.post(
        f"{base}/admin/withdrawals/withdrawrecord/",
        data={
            **chosen,
            "apply": "Approve",
            "remark": "checked by the e2e test",
            "csrfmiddlewaretoken": csrf(confirm.text),
        },
        timeout=10,
    )
    assert done.status_code == 200, done.text[-2000:]


def deposits(run: FirstRun, amounts: dict[str, str]) -> dict[str, str]:
    """demo_deposit of each coin, one after the other sent (one depositor per chain), followed in parallel."""
    started = []
    for coin, amount in amounts.items():
        process = run.manage("demo_deposit", "--user", "demo", "--coin", coin, "--amount", amount, "--timeout", "200")
        lines = [process.stdout.readline(), process.stdout.readline()]  # "sent ...", "tx HASH; ..."
        assert lines[1].startswith("tx "), "".join(lines) + process.stdout.read()
        started.append((coin, process, lines))
    hashes = {}
    for coin, process, lines in started:
        rest, _ = process.communicate(timeout=LOOP_TIMEOUT)
        output = "".join(lines) + rest
        assert process.returncode == 0, output
        assert re.search(r"pending \d+/\d+ confirmations", output), output  # seen pending ...
        assert output.rstrip().splitlines()[-1].startswith(f"credited: {amounts[coin]} {coin}"), (
            output
        )  # ... then credited
        hashes[coin] = lines[1].split()[1].rstrip(";")
    return hashes


def outside_addresses() -> dict[str, str]:
    """Addresses of nobody in the wallet, one per chain (TEST-ONLY random keys)."""
    return {
        "ETH": Account.create().address,
        "TRON": PrivateKey.random().public_key.to_base58check_address(),
        "BTC": segwit_encode("bcrt", 0, os.urandom(20)),
    }


def btc_paid(run: FirstRun, tx_hash: str, address: str) -> int:
    """Satoshis the node's copy of a mined BTC transaction pays to address (by its script)."""
    btc = BtcAdapter(url=f"http://wallet:devchain-only-api-key@127.0.0.1:{run.ports['btc']}/")
    tx = btc.node.call("getrawtransaction", [tx_hash, True])
    assert tx.get("blockhash"), tx_hash  # mined
    script = btc.match_key(address)
    return sum(btc_to_sats(out["value"]) for out in tx["vout"] if out["scriptPubKey"]["hex"] == script)


def loop(run: FirstRun, *, deposit: dict[str, str], small: dict[str, str], large_eth: str) -> None:
    """The whole loop once: deposits credited, withdrawals paid, a large one approved in the admin and paid."""
    credentials = run.credentials()
    api = Api(run.base, credentials["demo"])
    before = {b["coin_id"]: Decimal(b["available"]) for b in api.get("balances")["results"]}

    hashes = deposits(run, deposit)

    recharges = {r["tx_hash"].lower(): r for r in api.get("wallet/recharges?page_size=200")["results"]}
    for tx_hash in hashes.values():
        assert recharges[tx_hash.lower()]["status"] == 2, recharges[tx_hash.lower()]  # credited
    balances = {b["coin_id"]: Decimal(b["available"]) for b in api.get("balances")["results"]}
    for coin, amount in deposit.items():
        assert balances[coin] == before.get(coin, Decimal(0)) + Decimal(amount)

    to = outside_addresses()
    chain_of = {"BTC": "BTC", "ETH": "ETH", "USDT-ERC20": "ETH", "TRX": "TRON", "USDT-TRC20": "TRON"}
    applied = {coin: api.withdraw(coin, to[chain_of[coin]], amount) for coin, amount in small.items()}
    large = api.withdraw("ETH", Account.create().address, large_eth)
    assert {coin: w["status_name"] for coin, w in applied.items()} == dict.fromkeys(small, "APPROVED")
    assert large["status_name"] == "PENDING_REVIEW"  # above the ETH audit threshold

    admin_approve(run.base, credentials["admin"], large["withdraw_no"])

    assert api.withdrawals()[large["withdraw_no"]]["status_name"] in ("APPROVED", "PROCESSING", "COMPLETED")
    wanted = [applied[coin]["withdraw_no"] for coin in PAID_ON_CHAIN] + [large["withdraw_no"]]
    deadline = time.monotonic() + LOOP_TIMEOUT
    while True:
        now = api.withdrawals()
        if all(now[no]["status_name"] == "COMPLETED" for no in wanted):
            break
        assert not any(now[no]["status_name"] == "FAILED" for no in wanted), now
        assert time.monotonic() < deadline, {no: now[no]["status_name"] for no in wanted}
        time.sleep(2)
    recorded = run.devchain()
    eth = EvmAdapter(url=f"http://127.0.0.1:{run.ports['evm']}/")
    tron = TronAdapter(url=f"http://127.0.0.1:{run.ports['tron']}/")
    on_chain = {
        "ETH": (eth.balance(to["ETH"]), 18),
        "USDT-ERC20": (eth.balance(to["ETH"], contract=recorded["USDT-ERC20"]), 6),
        "TRX": (tron.balance(to["TRON"]), 6),
        "USDT-TRC20": (tron.balance(to["TRON"], contract=recorded["USDT-TRC20"]), 6),
        "BTC": (btc_paid(run, now[applied["BTC"]["withdraw_no"]]["tx_hash"], to["BTC"]), 8),
    }
    for coin in PAID_ON_CHAIN:
        paid, decimals = on_chain[coin]
        assert Decimal(paid).scaleb(-decimals) == Decimal(applied[coin]["actual_amount"]), coin


def test_the_readme_first_command_shows_the_whole_loop_and_again_after_a_restart(tmp_path):
    assert _first_command() == "bash scripts/run.sh"
    run = FirstRun(tmp_path)
    try:
        run.start()
        assert "Hot wallets, funded on the dev chains" in run.output

        loop(
            run,
            deposit={"BTC": "1", "ETH": "20", "USDT-ERC20": "100", "TRX": "200", "USDT-TRC20": "100"},
            small={"BTC": "0.1", "ETH": "1", "USDT-ERC20": "20", "TRX": "50", "USDT-TRC20": "20"},
            large_eth="12",
        )
        assert run.interrupt() == 0
        first = run.devchain()

        run.start()

        assert run.devchain()["chains"] == first["chains"]  # the same chains came back
        loop(
            run,
            deposit={"BTC": "0.5", "ETH": "15", "USDT-ERC20": "50", "TRX": "100", "USDT-TRC20": "50"},
            small={"BTC": "0.2", "ETH": "0.5", "USDT-ERC20": "15", "TRX": "30", "USDT-TRC20": "15"},
            large_eth="11",
        )
        # After two mixed runs (deposits, fees, payouts on every chain, the funding and any sweep),
        # the ledger, users and house, equals what the exchange's addresses hold, on every coin.
        reconcile = run.manage("reconcile", nodes=True)
        out, _ = reconcile.communicate(timeout=300)
        assert reconcile.returncode == 0, out
        assert out.count(": BALANCED difference ") == 5, out  # SQLite: within its precision (README)
        assert run.interrupt() == 0
    finally:
        run.kill()

    kinds = {kind for kind, _, _ in run.alerts()}
    assert not kinds & {"REORG_TOO_DEEP", "NODE_DOWN", "RECONCILIATION_MISMATCH"}, run.alerts()
    for port in run.ports.values():  # every process of both runs is gone
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/", timeout=2)
