"""
Sending on the local dev chains from TEST-ONLY accounts, with the chains' own adapters and the
real signing libraries: hot wallet top-ups come from each chain's faucet account, demo deposits
from its depositor account (an "exchange user's outside wallet").

| chain | faucet | depositor |
| --- | --- | --- |
| ETH (ganache) | deterministic account 0 (ETH, test USDT) | deterministic account 1 |
| TRON (the fake) | TRON_KEYS["faucet"] (TRX, test USDT) | TRON_KEYS["depositor"] |
| BTC (bcoin regtest) | the miner's coinbases (BTC_MINER_KEY) | the same |

chains.devchain keeps these accounts funded on every start. Anything that is not a dev chain is
refused before a transaction is built: the EVM node must be ganache's chain 1337, the TRON node
the fake, the BTC node a regtest node.

Every key here is a public, throwaway TEST-ONLY key: it guards nothing outside a local dev chain.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from chains.base import ChainError, SignedTx, TxStatus
from chains.btc import BtcAdapter, Utxo, btc_to_sats, p2wpkh_script
from chains.codecs import segwit_encode
from chains.evm import EvmAdapter
from chains.rpc import url_without_credentials
from chains.tron import TronAdapter

FAUCET = "faucet"
DEPOSITOR = "depositor"
ROLES = (FAUCET, DEPOSITOR)
EVM_CHAIN_ID = 1337
# Derived from public phrases on purpose: anyone may know them, they fund only local dev chains.
TRON_KEYS = {role: hashlib.sha256(f"TEST-ONLY wallet dev chain: TRON {role}".encode()).digest() for role in ROLES}
BTC_MINER_KEY = hashlib.sha256(b"TEST-ONLY wallet dev chain: bcoin miner").digest()
EVM_ACCOUNT_INDEX = {FAUCET: 0, DEPOSITOR: 1}
BTC_FEE_SAT_VB = 2
COINBASE_MATURITY = 100
NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError, KeyError, TypeError)


class NotADevChain(Exception):
    """The node is not a local dev chain (or does not answer): nothing is sent."""


class DevSendError(Exception):
    """A dev chain refused or could not fund a transfer (faucet empty, transaction refused...)."""


def devchain_read(*, path: Path) -> dict[str, Any]:
    """
    Return what the dev chains recorded (`python -m chains.devnodes serve`): node URLs, test contracts.

    :raises NotADevChain: no such file (the dev chains never ran here) or not a JSON object.
    """
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotADevChain(
            f"the dev chains are not running ({path} is missing): start them with scripts/run.sh"
        ) from None
    except (OSError, ValueError):
        raise NotADevChain(f"{path} is unreadable: restart the dev chains (scripts/run.sh)") from None
    if not isinstance(recorded, dict):
        raise NotADevChain(f"{path} is not what the dev chains write: restart them (scripts/run.sh)")
    return recorded


def btc_miner_public_key() -> bytes:
    import coincurve

    return coincurve.PrivateKey(BTC_MINER_KEY).public_key.format(compressed=True)


def btc_node_address(address_or_script: str) -> str:
    """bcoin's regtest spelling ("rb1...") of a P2WPKH address or scriptPubKey, for generatetoaddress."""
    script = address_or_script
    if not script.startswith("0014"):
        script = BtcAdapter(url="http://127.0.0.1/", network="regtest").match_key(address_or_script)
    return segwit_encode("rb", 0, bytes.fromhex(script[4:]))


def outside_address(chain_id: str) -> str:
    """An address no wallet of the service owns (ganache's account 2 on ETH), to send a demo withdrawal to."""
    if chain_id == "ETH":
        from chains.devnodes import evm_accounts

        return evm_accounts(3)[2].address
    raise ValueError(f"no outside address for {chain_id}")


@dataclass(frozen=True)
class Sent:
    chain_id: str
    tx_hash: str
    to_address: str
    amount_base_units: int
    contract: str | None


class DevChain:
    """One dev chain, checked to be one, with its TEST-ONLY sending accounts."""

    def __init__(self, *, chain_id: str, recorded: dict[str, Any], btc_rpc_url: str = "") -> None:
        self.chain_id = chain_id
        self._nonces: dict[str, int] = {}
        self._spent: set[tuple[str, int]] = set()  # BTC outputs this instance spent (gettxout misses the mempool)
        try:
            if chain_id == "ETH":
                self.adapter: Any = EvmAdapter(url=str(recorded["ETH_RPC_URL"]), connect_timeout=1, read_timeout=10)
                if self.adapter.network_id() != EVM_CHAIN_ID:
                    raise NotADevChain(f"the EVM node at {self.adapter.node.url} is not the dev chain {EVM_CHAIN_ID}")
            elif chain_id == "TRON":
                self.adapter = TronAdapter(url=str(recorded["TRON_API_URL"]), connect_timeout=1, read_timeout=10)
                info = self.adapter.node.post("wallet/getnodeinfo", {}, what="getnodeinfo")
                if (info.get("configNodeInfo") or {}).get("codeVersion") != "fake":
                    raise NotADevChain(f"the TRON node at {self.adapter.node.url} is not the dev chains' TRON fake")
            elif chain_id == "BTC":
                _, auth = url_without_credentials(btc_rpc_url)
                url = str(recorded["BTC_RPC_URL"])
                if auth:
                    url = url.replace("://", f"://{auth[0]}:{auth[1]}@", 1)
                self.adapter = BtcAdapter(url=url, network="regtest", connect_timeout=1, read_timeout=10)
                if self.adapter.node.call("getblockchaininfo").get("chain") != "regtest":
                    raise NotADevChain("the BTC node is not a regtest node")
            else:
                raise NotADevChain(f"no dev chain for {chain_id}")
        except NotADevChain:
            raise
        except NODE_ERRORS as exc:
            raise NotADevChain(
                f"the {chain_id} dev chain is not running ({type(exc).__name__}): start it with scripts/run.sh"
            ) from None

    # --- accounts ------------------------------------------------------------------------
    def sender_address(self, role: str) -> str:
        if self.chain_id == "ETH":
            from chains.devnodes import evm_accounts

            return evm_accounts(EVM_ACCOUNT_INDEX[role] + 1)[EVM_ACCOUNT_INDEX[role]].address
        if self.chain_id == "TRON":
            from tronpy.keys import PrivateKey

            return PrivateKey(TRON_KEYS[role]).public_key.to_base58check_address()
        return btc_node_address(p2wpkh_script(btc_miner_public_key()))

    def balance(self, address: str, contract: str | None = None) -> int:
        return int(self.adapter.balance(address, contract=contract))

    # --- sending -------------------------------------------------------------------------
    def send(self, *, role: str, to_address: str, amount_base_units: int, contract: str | None = None) -> Sent:
        """
        Sign and broadcast a transfer from the role's TEST-ONLY account; return it (not mined yet).

        :raises DevSendError: the account cannot pay it or the node refused it.
        """
        try:
            if self.chain_id == "ETH":
                tx_hash = self._send_evm(role, to_address, amount_base_units, contract)
            elif self.chain_id == "TRON":
                tx_hash = self._send_tron(role, to_address, amount_base_units, contract)
            else:
                tx_hash = self._send_btc(to_address, amount_base_units)
        except DevSendError:
            raise
        except NODE_ERRORS as exc:
            raise DevSendError(f"{self.chain_id} dev chain: sending failed: {str(exc)[:200]}") from None
        return Sent(self.chain_id, tx_hash, to_address, amount_base_units, contract)

    def _send_evm(self, role: str, to_address: str, amount: int, contract: str | None) -> str:
        from chains.devnodes import evm_accounts

        account = evm_accounts(EVM_ACCOUNT_INDEX[role] + 1)[EVM_ACCOUNT_INDEX[role]]
        nonce = max(self._nonces.get(role, 0), self.adapter.next_nonce(account.address))
        unsigned = self.adapter.build_transfer(
            from_address=account.address,
            to_address=to_address,
            amount_base_units=amount,
            contract=contract,
            nonce=nonce,
        )
        short = self.adapter.shortfall(unsigned)
        if short is not None:
            raise DevSendError(f"the ETH dev chain's {role} account cannot pay: {short}")
        signed = account.sign_transaction(unsigned.payload)
        tx_hash = "0x" + signed.hash.hex().removeprefix("0x")
        self.adapter.broadcast_irreversible(SignedTx(tx_hash=tx_hash, raw=signed.raw_transaction.hex()))
        self._nonces[role] = nonce + 1
        return tx_hash

    def _send_tron(self, role: str, to_address: str, amount: int, contract: str | None) -> str:
        from tronpy.keys import PrivateKey

        key = PrivateKey(TRON_KEYS[role])
        unsigned = self.adapter.build_transfer(
            from_address=key.public_key.to_base58check_address(),
            to_address=to_address,
            amount_base_units=amount,
            contract=contract,
        )
        short = self.adapter.shortfall(unsigned)
        if short is not None:
            raise DevSendError(f"the TRON dev chain's {role} account cannot pay: {short}")
        tx = unsigned.payload.sign(key)
        return self.adapter.broadcast_irreversible(SignedTx(tx_hash=tx.txid, raw=json.dumps(tx.to_json())))

    def _send_btc(self, to_address: str, amount: int) -> str:
        from bitcoinlib.keys import Key

        public = btc_miner_public_key()
        miner = btc_node_address(p2wpkh_script(public))
        utxos: list[Utxo] = []
        for utxo in self._miner_coinbases(public):
            utxos.append(utxo)
            if sum(u.value_sats for u in utxos) > amount + 100_000:
                break
        else:
            raise DevSendError("the BTC dev chain's miner has no mature coinbase left to pay from")
        unsigned = self.adapter.build_transfer(
            from_address=miner,
            to_address=to_address,
            amount_base_units=amount,
            utxos=utxos,
            change_address=miner,
            fee_rate_sat_vb=BTC_FEE_SAT_VB,
        )
        tx = unsigned.payload
        tx.sign(keys=[Key(BTC_MINER_KEY, network="regtest")])
        tx.sign_and_update()  # refreshes txid and vsize after signing
        tx_hash = self.adapter.broadcast_irreversible(SignedTx(tx_hash=tx.txid, raw=tx.raw_hex()))
        self._spent.update((u.txid, u.vout) for u in utxos)
        return tx_hash

    def _miner_coinbases(self, public: bytes) -> Iterator[Utxo]:
        """The miner's mature, unspent coinbase outputs, oldest first (none spent in the mempool)."""
        node = self.adapter.node
        script = p2wpkh_script(public)
        in_mempool = set()
        for txid in node.call("getrawmempool") or []:
            for spent in node.call("getrawtransaction", [txid, 1]).get("vin", []):
                in_mempool.add((spent.get("txid"), spent.get("vout")))
        last = self.adapter.tip_height() - COINBASE_MATURITY
        for height in range(1, last + 1):
            block = node.call("getblock", [node.call("getblockhash", [height]), True, False])
            txid = block["tx"][0] if isinstance(block["tx"][0], str) else block["tx"][0]["txid"]
            if (txid, 0) in in_mempool or (txid, 0) in self._spent:
                continue
            out = node.call("gettxout", [txid, 0])
            if not out or out.get("scriptPubKey", {}).get("hex") != script:
                continue
            yield Utxo(
                txid=txid, vout=0, value_sats=btc_to_sats(Decimal(out["value"])), script_hex=script,
                public_key_hex=public.hex(),
            )  # fmt: skip

    # --- following -------------------------------------------------------------------------
    def status(self, tx_hash: str) -> TxStatus:
        return self.adapter.tx_status(tx_hash)

    def tip_height(self) -> int:
        return int(self.adapter.tip_height())

    def wait_mined(self, tx_hashes: list[str], *, timeout: float) -> dict[str, TxStatus]:
        """
        Wait until every transaction is in a block; return their statuses.

        :raises DevSendError: one is still unmined after timeout seconds, or failed on chain.
        """
        deadline = time.monotonic() + timeout
        done: dict[str, TxStatus] = {}
        while True:
            for tx_hash in tx_hashes:
                if tx_hash not in done:
                    status = self.status(tx_hash)
                    if status.block_number is not None:
                        done[tx_hash] = status
            if len(done) == len(tx_hashes):
                break
            if time.monotonic() > deadline:
                missing = ", ".join(h for h in tx_hashes if h not in done)
                raise DevSendError(
                    f"{self.chain_id} dev chain: not mined within {timeout:.0f} s ({missing}): "
                    "is the dev chain making blocks?"
                )
            time.sleep(0.25)
        failed = [h for h, s in done.items() if s.success is False]
        if failed:
            raise DevSendError(f"{self.chain_id} dev chain: failed on chain: {', '.join(failed)}")
        return done


# --- hot wallet top-ups ---------------------------------------------------------------------
def btc_funded_balance(*, chain: DevChain, record: dict[str, Any], address: str) -> int:
    """What the faucet's outputs to address still hold unspent (bcoin cannot total an address's UTXOs)."""
    total = 0
    for txid, vout in record.get(address, []):
        out = chain.adapter.node.call("gettxout", [txid, vout])
        if out:
            total += btc_to_sats(Decimal(out["value"]))
    return total


def top_up(
    *, chain: DevChain, address: str, target_base_units: int, contract: str | None = None, record_path: Path
) -> Sent | None:
    """
    Send the faucet's coins to address until it holds target_base_units; None if it already does.

    BTC: what address holds is what earlier top-ups sent it, still unspent (kept in record_path).
    :raises DevSendError: the faucet cannot pay or the node refused.
    """
    if chain.chain_id == "BTC":
        record = json.loads(record_path.read_text()) if record_path.exists() else {}
        held = btc_funded_balance(chain=chain, record=record, address=address)
    else:
        held = chain.balance(address, contract)
    if held >= target_base_units:
        return None
    sent = chain.send(role=FAUCET, to_address=address, amount_base_units=target_base_units - held, contract=contract)
    if chain.chain_id == "BTC":
        record.setdefault(address, []).append([sent.tx_hash, 0])  # the payment is output 0, change after it
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record_path.write_text(json.dumps(record, indent=1) + "\n")
    return sent
