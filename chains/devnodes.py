"""
Local chain dev nodes for tests, benchmarks and the dev run: each starts on a free loopback port,
waits until it answers, and returns a handle with `url` and `stop()`.

- EVM: ganache (npm), deterministic wallet, chain id 1337, shanghai; test tokens deployed via web3.
- BTC: bcoin (npm) in regtest, no wallet, 500 blocks mined so segwit is active.
- TRON: chains.tron_fake (a loopback fake of the TRON HTTP API) with a ganache of its own behind it
  that runs the TRC20 contracts.

Tests start them in memory, mining only when asked (instant mining on ganache, `mine()` elsewhere).
Given a data folder they keep their chain there across restarts, and given a block time they
make blocks on their own: the dev run (chains.devchain) uses both.

Every key here is a throwaway TEST-ONLY key of a local dev chain.

    python -m chains.devnodes serve --evm-port 8545 --tron-port 8090 --btc-port 18443

runs the dev chains of the run command: see chains.devchain.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from chains.contracts import artifact

BASE_DIR = Path(__file__).resolve().parent.parent
NODE_BIN = BASE_DIR / "node_modules" / ".bin"
# ganache's --wallet.deterministic mnemonic: public, TEST-ONLY, funds nothing outside a dev chain.
GANACHE_TEST_MNEMONIC = "myth like bonus scare over problem client lizard pioneer submit female collect"
EVM_CHAIN_ID = 1337
READY_TIMEOUT = 30.0
USDT_DECIMALS = 6


class DevNodeError(Exception):
    """A dev node did not start (npm packages missing, port taken, crash)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_bin(name: str) -> str:
    path = NODE_BIN / name
    if not path.exists():
        raise DevNodeError(f"{path} is missing: run scripts/npm-install.sh")
    return str(path)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the thread that started it dies (even by kill -9), Linux only."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Process:
    """A child node process with its log in a temporary file; stopped at exit at the latest."""

    def __init__(self, args: list[str], name: str) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"devnode-{name}-", suffix=".log", delete=False)
        self.popen = subprocess.Popen(  # noqa: S603 - fixed local binaries, no shell
            args,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only sets a flag in the child
        )
        atexit.register(self.stop)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return Path(self.log.name).read_text(errors="replace")[-2000:]
        return ""

    def wait_ready(self, check: Callable[[], bool], timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while time.monotonic() < deadline:
            if not self.alive():
                raise DevNodeError(f"{self.name} exited during start-up:\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(delay)
            delay = min(delay * 1.5, 0.3)
        self.stop()
        raise DevNodeError(f"{self.name} did not answer within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.log.close()
            os.unlink(self.log.name)


# --- EVM: ganache --------------------------------------------------------------------------
@dataclass
class EvmDevNode:
    url: str
    port: int
    process: _Process
    w3: Web3
    # Deterministic ganache accounts, funded with 1000 ETH each. TEST-ONLY keys.
    accounts: list[LocalAccount]
    contracts: dict[str, str] = field(default_factory=dict)
    block_time: float = 0.0  # 0: ganache mines each transaction at once

    def stop(self) -> None:
        self.process.stop()

    def deploy(self, contract: str, *args: object, sender: int = 0) -> str:
        """Deploy a compiled test contract from accounts[sender]; return its checksum address."""
        compiled = artifact(contract)
        factory = self.w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
        tx = factory.constructor(*args).build_transaction(self._tx_base(sender, gas=3_000_000))
        receipt = self.send_tx(tx, sender=sender)
        address = receipt["contractAddress"]
        assert address is not None
        return address

    def token_deploy(
        self,
        *,
        name: str = "Tether USD",
        symbol: str = "USDT",
        decimals: int = USDT_DECIMALS,
        contract: str = "TestToken",
    ) -> str:
        return self.deploy(contract, name, symbol, decimals)

    def contract(self, address: str, name: str = "TestToken") -> Any:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=artifact(name)["abi"])

    def _tx_base(self, sender: int, *, gas: int) -> dict[str, Any]:
        address = self.accounts[sender].address
        return {
            "from": address,
            "nonce": self.w3.eth.get_transaction_count(address, "pending"),
            "gas": gas,
            "gasPrice": self.w3.eth.gas_price,
            "chainId": EVM_CHAIN_ID,
        }

    def send_tx(self, tx: dict[str, Any], *, sender: int = 0, wait: bool = True) -> TxReceipt:
        """Sign tx with accounts[sender] (filling nonce/gas price/chain id) and send it; wait for the receipt."""
        base = self._tx_base(sender, gas=tx.get("gas", 200_000))
        full = {**base, **tx}
        full.pop("from", None)
        signed = self.accounts[sender].sign_transaction(full)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        timeout = 10 + 3 * self.block_time
        return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout, poll_latency=0.02)

    def transact(self, call: Any, *, sender: int = 0, gas: int = 300_000) -> TxReceipt:
        """Send a contract function call (web3 ContractFunction) from accounts[sender]."""
        return self.send_tx(call.build_transaction(self._tx_base(sender, gas=gas)), sender=sender)

    def snapshot(self) -> str:
        return self.w3.provider.make_request("evm_snapshot", [])["result"]

    def revert(self, snapshot_id: str) -> None:
        assert self.w3.provider.make_request("evm_revert", [snapshot_id])["result"] is True

    def mine(self, blocks: int = 1) -> None:
        for _ in range(blocks):
            self.w3.provider.make_request("evm_mine", [])

    def fill_blocks(self, *, blocks: int, txs_per_block: int, recipients: list[str], token: str | None = None) -> range:
        """Mine `blocks` blocks of `txs_per_block` transfers each (ETH, or `token` if given), round robin
        over the recipients, from ganache's unlocked accounts; return the heights. For benchmarks."""
        from chains.rpc import HttpNode

        node = HttpNode(self.url, name="ganache", connect_timeout=2, read_timeout=120)
        senders = [a.address for a in self.accounts]
        start = self.w3.eth.block_number + 1
        node.call("miner_stop")
        try:
            sent = 0
            for _ in range(blocks):
                calls = []
                for _ in range(txs_per_block):
                    to = recipients[sent % len(recipients)]
                    tx: dict[str, Any] = {"from": senders[sent % len(senders)], "gas": hex(21_000)}
                    if token is None:
                        tx.update({"to": to, "value": hex(10**12 + sent)})
                    else:
                        data = "0xa9059cbb" + to[2:].lower().rjust(64, "0") + format(1 + sent, "064x")
                        tx.update({"from": senders[0], "to": token, "data": data, "gas": hex(60_000)})
                    calls.append(("eth_sendTransaction", [tx]))
                    sent += 1
                for chunk in range(0, len(calls), 200):
                    node.batch(calls[chunk : chunk + 200])
                node.call("evm_mine")
        finally:
            node.call("miner_start")
        return range(start, self.w3.eth.block_number + 1)


def evm_accounts(count: int) -> list[LocalAccount]:
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(GANACHE_TEST_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


def evm_start(
    *,
    port: int | None = None,
    accounts: int = 10,
    hardfork: str = "shanghai",
    block_time: float = 0.0,
    db_path: Path | None = None,
) -> EvmDevNode:
    """Start ganache on 127.0.0.1 (a free port unless given) and wait until it answers.

    hardfork "berlin" gives a chain without EIP-1559 (no base fee: legacy transactions only).
    block_time > 0: a block every block_time seconds (transactions wait for it) instead of one per
    transaction. db_path: the chain is kept in that folder and continues there on the next start.
    """
    port = port or free_port()
    args = [
        _node_bin("ganache"),
        "--host=127.0.0.1",
        f"--port={port}",
        "--wallet.deterministic=true",
        f"--wallet.totalAccounts={accounts}",
        f"--chain.chainId={EVM_CHAIN_ID}",
        f"--chain.hardfork={hardfork}",
        "--logging.quiet=true",
    ]
    if block_time > 0:
        args.append(f"--miner.blockTime={block_time:g}")
    if db_path is not None:
        db_path.mkdir(parents=True, exist_ok=True)
        args.append(f"--database.dbPath={db_path}")
    process = _Process(args, "ganache")
    url = f"http://127.0.0.1:{port}/"
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 10}))
    process.wait_ready(lambda: w3.eth.chain_id == EVM_CHAIN_ID)
    return EvmDevNode(
        url=url, port=port, process=process, w3=w3, accounts=evm_accounts(accounts), block_time=block_time
    )


# --- BTC: bcoin regtest --------------------------------------------------------------------
@dataclass
class BtcDevNode:
    url: str  # with the api key as basic-auth password: http://wallet:KEY@127.0.0.1:PORT/
    port: int
    process: _Process
    # A temporary folder removed at stop(), or None when the chain is kept in a given folder.
    data_dir: tempfile.TemporaryDirectory | None
    # A TEST-ONLY key the regtest coinbases pay to (P2WPKH), to fund test transactions.
    miner_private_key: bytes
    miner_public_key: bytes

    def stop(self) -> None:
        self.process.stop()
        if self.data_dir is not None:
            with contextlib.suppress(OSError):
                self.data_dir.cleanup()

    def rpc(self, method: str, *params: object) -> Any:
        from chains.rpc import HttpNode, decimal_float

        node = HttpNode(self.url, name="bcoin", connect_timeout=2, read_timeout=30, parse_float=decimal_float)
        return node.call(method, params)

    @property
    def miner_script(self) -> str:
        from chains.btc import p2wpkh_script

        return p2wpkh_script(self.miner_public_key)

    @property
    def miner_address(self) -> str:
        """The miner's P2WPKH address in bcoin's regtest encoding (hrp "rb")."""
        from chains.codecs import segwit_encode

        return segwit_encode("rb", 0, bytes.fromhex(self.miner_script[4:]))

    def mine(self, blocks: int = 1, address: str | None = None) -> list[str]:
        return self.rpc("generatetoaddress", blocks, address or self.miner_address)


def btc_start(
    *,
    port: int | None = None,
    blocks: int = 500,
    api_key: str | None = None,
    data_dir: Path | None = None,
    miner_key: bytes | None = None,
) -> BtcDevNode:
    """Start bcoin regtest on 127.0.0.1 and mine up to height `blocks` (segwit needs ~432).

    In memory unless data_dir is given: then the chain is kept there and continues on the next
    start. The api key (the RPC password) and the miner's key are random unless given.
    """
    import coincurve

    port = port or free_port()
    api_key = api_key or secrets.token_hex(16)
    temporary = None
    if data_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="bcoin-")
        prefix, storage = temporary.name, ["--memory=true"]
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        prefix, storage = str(data_dir), []
    process = _Process(
        [
            _node_bin("bcoin"),
            "--network=regtest",
            *storage,
            "--http-host=127.0.0.1",
            f"--http-port={port}",
            f"--api-key={api_key}",
            "--listen=false",
            "--workers=false",
            "--no-wallet=true",
            "--index-tx=true",
            "--log-level=" + os.environ.get("BCOIN_LOG_LEVEL", "warning"),
            f"--prefix={prefix}",
        ],
        "bcoin",
    )
    key = coincurve.PrivateKey(miner_key) if miner_key is not None else coincurve.PrivateKey()
    node = BtcDevNode(
        url=f"http://wallet:{api_key}@127.0.0.1:{port}/",
        port=port,
        process=process,
        data_dir=temporary,
        miner_private_key=key.secret,
        miner_public_key=key.public_key.format(compressed=True),
    )
    process.wait_ready(lambda: isinstance(node.rpc("getblockcount"), int))
    missing = blocks - node.rpc("getblockcount")
    if missing > 0:
        node.mine(missing)
    return node


# --- TRON: the loopback fake with its EVM behind it ----------------------------------------
@dataclass
class TronDevNode:
    url: str
    port: int
    server: Any  # chains.tron_fake.TronFakeServer
    evm: EvmDevNode
    thread: threading.Thread
    contracts: dict[str, str] = field(default_factory=dict)  # name -> TRON base58 address

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
        self.evm.stop()

    @property
    def state(self) -> Any:
        return self.server.state

    def post(self, path: str, payload: dict[str, Any] | None = None) -> Any:
        response = requests.post(self.url.rstrip("/") + path, json=payload or {}, timeout=10)
        return response.json()

    def mine(self, blocks: int = 1) -> Any:
        return self.post(f"/fake/mine?blocks={blocks}")

    def reorg(self, depth: int, *, stale_index: bool = False) -> Any:
        """Replace the last `depth` blocks; stale_index: the transaction index keeps their transactions."""
        return self.post(f"/fake/reorg?depth={depth}" + ("&stale_index=true" if stale_index else ""))

    def fund(self, address: str, amount_sun: int) -> Any:
        return self.post("/fake/fund", {"address": address, "amount": amount_sun})

    def trc20_deploy(
        self,
        *,
        name: str = "Tether USD",
        symbol: str = "USDT",
        decimals: int = USDT_DECIMALS,
        contract: str = "TestToken",
        owner: str | None = None,
        supply: int = 0,
    ) -> str:
        """Deploy a token on the EVM behind the fake (minting `supply` to `owner`); return its TRON address."""
        answer = self.post(
            "/fake/deploy",
            {"contract": contract, "args": [name, symbol, decimals], "owner": owner or "", "supply": supply},
        )
        return answer["address"]


def tron_start(
    *,
    port: int | None = None,
    evm: EvmDevNode | None = None,
    block_interval: float = 0.0,
    data_dir: Path | None = None,
) -> TronDevNode:
    """Start the TRON fake on 127.0.0.1 with a ganache of its own behind it (unless one is given).

    block_interval > 0: a block every block_interval seconds. data_dir: the fake's chain and its
    ganache are kept there and continue on the next start.
    """
    from chains.tron_fake import TronFakeServer

    state = None
    if data_dir is None:
        backend = evm or evm_start()
    else:
        from chains.devchain import PersistentFakeTron

        backend = evm or evm_start(db_path=data_dir / "evm")
        state = PersistentFakeTron(backend, path=data_dir / "chain")
    server = TronFakeServer(("127.0.0.1", port or 0), evm=backend, block_interval=block_interval, state=state)
    thread = threading.Thread(target=server.serve_forever, name="tron-fake", daemon=True)
    thread.start()
    actual_port = server.server_address[1]
    return TronDevNode(
        url=f"http://127.0.0.1:{actual_port}/", port=actual_port, server=server, evm=backend, thread=thread
    )


# --- the dev run ---------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    """`python -m chains.devnodes serve ...`: the dev chains of the run command (chains.devchain)."""
    from chains import devchain

    devchain.main(argv)


if __name__ == "__main__":
    main()
