"""
The dev chains of the run command: `python -m chains.devnodes serve` (scripts/run.sh, scripts/devchain.sh).

- ganache (EVM), the TRON fake (with a ganache of its own) and bcoin regtest keep their chains
  under DATA_DIR (var/devchain/), so that a second run continues the chains the database
  remembers instead of starting empty ones;
- each chain makes a block every --block-seconds on its own (ganache's --miner.blockTime, the
  fake's producer, a miner thread for bcoin): confirmations arrive without anyone mining;
- the test USDT is deployed once per chain and kept across restarts, and the TEST-ONLY faucet
  and depositor accounts of chains.devsend are kept funded on every start;
- DEVCHAIN_FILE (var/devchain.json) records the node URLs, the test contracts and each chain's
  identity (the hash of its first block). A chain that comes back new while an old one was
  recorded (its data folder was removed) is named in "fresh_chains" and announced loudly:
  demo_setup then resets what the database remembers of the old chain.
- A ready file (DEVCHAIN_FILE with suffix .ready) exists while everything is up: scripts/run.sh
  starts the worker only then, so its first ticks do not find the nodes still starting.

Every key here is a throwaway TEST-ONLY key of a local dev chain.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from chains import devsend
from chains.devnodes import (
    USDT_DECIMALS,
    BtcDevNode,
    DevNodeError,
    EvmDevNode,
    TronDevNode,
    btc_start,
    evm_start,
    tron_start,
)
from chains.tron_fake import FakeTron, evm_of, hex_address

DEFAULT_BLOCK_SECONDS = 2.0
ETHER = 10**18
TRX = 10**6
USDT = 10**USDT_DECIMALS
# What the TEST-ONLY accounts hold after each start (topped up when below half).
EVM_ACCOUNT_ETHER = 1_000_000 * ETHER
TRON_ACCOUNT_TRX = 10_000_000 * TRX
ACCOUNT_USDT = 10_000_000 * USDT


# --- the TRON fake, kept in a folder ----------------------------------------------------------
class PersistentFakeTron(FakeTron):
    """
    The TRON fake's chain kept in a folder: each block appended to blocks.jsonl, balances in state.json.

    Its contracts live on the ganache behind it, which keeps its own database (tron_start gives it
    one beside this folder). Pending transactions are not kept: a wallet broadcasts them again.
    A reorg can go back to the last restart at most (the EVM snapshots of older blocks are gone).
    """

    def __init__(self, evm: Any, *, path: Path) -> None:
        super().__init__(evm)  # the genesis of a new chain; replaced below by a kept one
        path.mkdir(parents=True, exist_ok=True)
        self._journal = path / "blocks.jsonl"
        self._state_file = path / "state.json"
        self._written = 0
        with self.lock:
            if self._state_file.exists():
                self._load()
            self._save(rewrite=True)

    def _load(self) -> None:
        state = json.loads(self._state_file.read_text())
        count = int(state["blocks"])
        blocks: list[dict[str, Any]] = []
        infos: dict[int, list[dict[str, Any]]] = {}
        with self._journal.open() as journal:
            for number, line in zip(range(count), journal, strict=False):
                entry = json.loads(line)
                blocks.append(entry["block"])
                infos[number] = entry["infos"]
        if len(blocks) != count:
            raise DevNodeError(f"{self._journal} holds {len(blocks)} blocks, {self._state_file} counts {count}")
        self.blocks, self.infos = blocks, infos
        self.tx_block = {tx["txID"]: n for n, block in enumerate(blocks) for tx in block["transactions"]}
        self.balances = {k: int(v) for k, v in state["balances"].items()}
        self.net_used = {k: int(v) for k, v in state["net_used"].items()}
        self.contracts = set(state["contracts"])
        self.salt = int(state["salt"])
        self.pending = []
        self.snapshots = {
            count - 1: (
                copy.deepcopy(self.balances),
                copy.deepcopy(self.net_used),
                set(self.contracts),
                self.evm.snapshot(),
            )
        }

    def _save(self, *, rewrite: bool = False) -> None:
        # The journal first: the state file never counts a block the journal lacks.
        if rewrite or self._written > len(self.blocks):
            tmp = self._journal.with_suffix(".tmp")
            with tmp.open("w") as journal:
                for number, block in enumerate(self.blocks):
                    journal.write(json.dumps({"block": block, "infos": self.infos.get(number, [])}) + "\n")
            tmp.replace(self._journal)
        else:
            with self._journal.open("a") as journal:
                for number in range(self._written, len(self.blocks)):
                    journal.write(json.dumps({"block": self.blocks[number], "infos": self.infos[number]}) + "\n")
        self._written = len(self.blocks)
        state = {
            "blocks": len(self.blocks),
            "balances": self.balances,
            "net_used": self.net_used,
            "contracts": sorted(self.contracts),
            "salt": self.salt,
        }
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._state_file)

    def mine(self, count: int = 1) -> list[int]:
        with self.lock:
            made = super().mine(count)
            self._save()
            return made

    def reorg(self, depth: int) -> list[int]:
        with self.lock:
            made = super().reorg(depth)
            self._save(rewrite=True)
            return made

    def fund(self, address: str, amount: int) -> int:
        with self.lock:
            balance = super().fund(address, amount)
            self._save()
            return balance

    def deploy(self, contract: str, args: list[Any], owner: str = "", supply: int = 0) -> str:
        with self.lock:
            address = super().deploy(contract, args, owner, supply)
            self._save()
            return address


# --- start-up steps -----------------------------------------------------------------------------
def _json_read(path: Path) -> dict[str, Any]:
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def devchain_contracts_save(*, path: Path, contracts: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(contracts, indent=2) + "\n")
    tmp.replace(path)


def _identities(evm: EvmDevNode, tron: TronDevNode, btc: BtcDevNode | None) -> dict[str, str]:
    """Each chain's identity: its first block's hash (bcoin's regtest genesis is the same for every chain)."""
    identities = {"ETH": evm.w3.eth.get_block(0)["hash"].hex(), "TRON": tron.state.blocks[0]["blockID"]}
    if btc is not None:
        identities["BTC"] = btc.rpc("getblockhash", 1)
    return identities


def _usdt_erc20(evm: EvmDevNode, previous: dict[str, Any], same_chain: bool) -> str:
    kept = previous.get("USDT-ERC20")
    if (
        same_chain
        and isinstance(kept, str)
        and evm.w3.eth.get_code(evm.w3.to_checksum_address(kept)) not in (b"", None)
    ):
        return kept
    return evm.token_deploy()


def _usdt_trc20(tron: TronDevNode, previous: dict[str, Any], same_chain: bool) -> str:
    kept = previous.get("USDT-TRC20")
    if same_chain and isinstance(kept, str) and hex_address(kept) in tron.state.contracts:
        return kept
    return tron.trc20_deploy()


def _faucets_refill(evm: EvmDevNode, tron: TronDevNode, *, usdt_erc20: str, usdt_trc20: str) -> None:
    """Keep the TEST-ONLY faucet and depositor accounts of chains.devsend funded (out of band)."""
    erc20 = evm.contract(usdt_erc20)
    for index in devsend.EVM_ACCOUNT_INDEX.values():
        address = evm.accounts[index].address
        if evm.w3.eth.get_balance(address) < EVM_ACCOUNT_ETHER // 2:
            evm.w3.provider.make_request("evm_setAccountBalance", [address, hex(EVM_ACCOUNT_ETHER)])
        if erc20.functions.balanceOf(address).call() < ACCOUNT_USDT // 2:
            evm.transact(erc20.functions.mint(address, ACCOUNT_USDT))  # account 0 deployed it: it mints
    from tronpy.keys import PrivateKey

    backend = tron.evm
    trc20 = backend.contract(evm_of(hex_address(usdt_trc20)))
    for key in devsend.TRON_KEYS.values():
        address = PrivateKey(key).public_key.to_base58check_address()
        if tron.state.balances.get(hex_address(address), 0) < TRON_ACCOUNT_TRX // 2:
            tron.fund(address, TRON_ACCOUNT_TRX)
        holder = backend.w3.to_checksum_address(evm_of(hex_address(address)))
        if trc20.functions.balanceOf(holder).call() < ACCOUNT_USDT // 2:
            # Minted on the EVM behind the fake, out of band: a genesis allocation, in no TRON block.
            backend.transact(trc20.functions.mint(holder, ACCOUNT_USDT))


def _coins_update(contracts: dict[str, str]) -> None:
    """Point the USDT coins of the dev database at the dev chains' tokens."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    django.setup()
    from django.core.exceptions import ObjectDoesNotExist
    from django.db.utils import DatabaseError

    from coins import services as coins_services

    for coin_id, address in contracts.items():
        try:
            coins_services.coin_set_contract(coin_id=coin_id, contract_address=address)
        except (DatabaseError, ObjectDoesNotExist) as exc:
            print(f"devchain: {coin_id} not updated ({type(exc).__name__}); run migrate first", file=sys.stderr)


def _miner(btc: BtcDevNode, *, every: float, stop: threading.Event) -> None:
    """bcoin makes no block on its own: mine one (with the mempool's transactions) every `every` seconds."""
    while not stop.wait(every):
        try:
            btc.mine(1)
        except Exception as exc:
            print(f"devchain: mining a BTC block failed: {type(exc).__name__}", file=sys.stderr, flush=True)


def _fresh_warning(fresh: list[str], path: Path) -> str:
    return (
        "\n" + "!" * 78 + "\n"
        f"!! NEW DEV CHAIN: {', '.join(fresh)} started empty, but {path} names an older chain.\n"
        "!! Its data folder (var/devchain/) was removed or replaced. What the database remembers of the\n"
        "!! old chain (scan cursor, recent blocks, nonces, pending deposits) is reset by demo_setup,\n"
        "!! which the run command calls next; balances credited on the old chain stay in the ledger.\n" + "!" * 78
    )


# --- serve ----------------------------------------------------------------------------------------
def serve(
    *,
    evm_port: int,
    tron_port: int,
    btc_port: int | None,
    block_seconds: float,
    data_dir: Path,
    update_coins: bool,
) -> None:
    """Start the dev chains (kept in data_dir), keep their faucets funded, record them; run until SIGTERM/SIGINT."""
    from django.conf import settings

    from chains.rpc import url_without_credentials

    record_path = Path(settings.DEVCHAIN_FILE)
    ready = record_path.with_suffix(".ready")
    ready.unlink(missing_ok=True)
    stop = threading.Event()

    def _interrupt(*_: object) -> None:
        if stop.is_set():
            return
        stop.set()
        raise KeyboardInterrupt  # leave start-up at once; `finally` stops what was started

    signal.signal(signal.SIGTERM, _interrupt)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        # Started in the background of a script, SIGINT is ignored: the terminal's Ctrl-C then stops
        # the script's other processes first, and the script stops the chains after them.
        signal.signal(signal.SIGINT, _interrupt)
    previous = _json_read(record_path)
    handles: list[Any] = []
    threads: list[threading.Thread] = []
    try:
        evm = evm_start(port=evm_port, block_time=block_seconds, db_path=data_dir / "evm")
        handles.append(evm)
        tron = tron_start(port=tron_port, block_interval=block_seconds, data_dir=data_dir / "tron")
        handles.append(tron)
        btc = None
        if btc_port:
            _, auth = url_without_credentials(settings.BTC_RPC_URL)
            btc = btc_start(
                port=btc_port,
                api_key=auth[1] if auth and auth[1] else None,
                data_dir=data_dir / "bcoin",
                miner_key=devsend.BTC_MINER_KEY,
            )
            handles.append(btc)
        identities = _identities(evm, tron, btc)
        known = previous.get("chains") or {}
        same = {chain: known.get(chain) == identity for chain, identity in identities.items()}
        # Chains replaced now, and any replaced earlier whose reset demo_setup has not done yet.
        fresh = sorted(
            {c for c, identity in identities.items() if known.get(c) not in (None, identity)}
            | set(previous.get("fresh_chains") or [])
        )
        usdt_erc20 = _usdt_erc20(evm, previous, same["ETH"])
        usdt_trc20 = _usdt_trc20(tron, previous, same["TRON"])
        _faucets_refill(evm, tron, usdt_erc20=usdt_erc20, usdt_trc20=usdt_trc20)
        record: dict[str, Any] = {
            "ETH_RPC_URL": evm.url,
            "TRON_API_URL": tron.url,
            "USDT-ERC20": usdt_erc20,
            "USDT-TRC20": usdt_trc20,
            "evm_funded_account": evm.accounts[0].address,
            "block_seconds": block_seconds,
            "chains": identities,
            "fresh_chains": fresh,
        }
        if btc is not None:
            record["BTC_RPC_URL"] = f"http://127.0.0.1:{btc.port}/"  # credentials: settings.BTC_RPC_URL
            record["BTC_RPC_PORT"] = btc.port
            if block_seconds > 0:
                threads.append(
                    threading.Thread(
                        target=_miner, kwargs={"btc": btc, "every": block_seconds, "stop": stop}, daemon=True
                    )
                )
        devchain_contracts_save(path=record_path, contracts=record)
        if fresh:
            print(_fresh_warning(fresh, record_path), file=sys.stderr, flush=True)
        if update_coins:
            _coins_update({"USDT-ERC20": usdt_erc20, "USDT-TRC20": usdt_trc20})
        for thread in threads:
            thread.start()
        ready.write_text(f"{os.getpid()}\n")
        print(json.dumps(record), flush=True)
        while not stop.wait(1):
            if any(isinstance(h, (EvmDevNode, BtcDevNode)) and not h.process.alive() for h in handles):
                raise DevNodeError("a dev node exited")
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        ready.unlink(missing_ok=True)
        for thread in threads:
            thread.join(timeout=5)
        for handle in reversed(handles):
            handle.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m chains.devnodes")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="start the dev chains and keep them running")
    run.add_argument("--evm-port", type=int, default=8545)
    run.add_argument("--tron-port", type=int, default=8090)
    run.add_argument("--btc-port", type=int, default=18443, help="bcoin regtest port (0: no BTC node)")
    run.add_argument(
        "--block-seconds",
        type=float,
        default=float(os.environ.get("DEVCHAIN_BLOCK_SECONDS") or DEFAULT_BLOCK_SECONDS),
        help="seconds between two blocks of each chain (default DEVCHAIN_BLOCK_SECONDS or 2)",
    )
    run.add_argument("--data-dir", type=Path, help="where the chains are kept (default VAR_DIR/devchain)")
    run.add_argument("--no-coins-update", action="store_true", help="do not touch coin_config")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    import django

    django.setup()
    from django.conf import settings

    serve(
        evm_port=args.evm_port,
        tron_port=args.tron_port,
        btc_port=args.btc_port or None,
        block_seconds=args.block_seconds,
        data_dir=args.data_dir or Path(settings.VAR_DIR) / "devchain",
        update_coins=not args.no_coins_update,
    )
