"""
A loopback fake of a TRON full node's HTTP API, for tests and the dev run (no TRON node can run here).

It earns trust by doing the real work where deposits depend on it:
- Transactions built and signed by tronpy are checked like a node does: the txID must be the
  SHA-256 of the protobuf-serialised raw_data (recomputed here from the JSON), the signature must
  recover (secp256k1) to the owner_address of the contract, the transaction must not be expired,
  must reference a block of this chain (TaPoS) and must not be a duplicate.
- TRX balances are kept per account; a transfer burns bandwidth (free 600 bytes a day per account,
  then 1000 sun a byte); a TRX transfer to an account that does not exist yet activates it for
  1 TRX plus 0.1 TRX of account-creation bandwidth instead.
- TRC20 contracts run on a real EVM (the ganache node behind the fake): a TRON address is 0x41 +
  the same 20 bytes as the EVM address and TRC20 is ERC20 bytecode, so transfers, reverts and
  Transfer events are real. Energy used (gas minus the intrinsic 21000) is burnt at 420 sun per
  unit up to the transaction's fee_limit; running out gives OUT_OF_ENERGY, a revert REVERT.
  /wallet/estimateenergy and /wallet/triggerconstantcontract estimate that energy with the EVM's
  eth_estimateGas, by the same formula.
- Blocks are produced on demand (POST /fake/mine?blocks=N) or every `block_interval` seconds, and
  POST /fake/reorg?depth=N replaces the last N blocks with new empty ones (balances and the EVM
  state are rolled back to the fork point; the orphaned transactions are dropped). With
  `stale_index=true` the transaction index keeps the orphaned transactions: gettransactionbyid
  and gettransactioninfobyid still answer with their old block, as a node whose index lags its
  blocks, or a load-balanced API whose backends disagree, does.

Test-only endpoints: /fake/mine, /fake/reorg, /fake/fund {address, amount}, /fake/deploy
{contract, args, owner?, supply?}.

Not emulated: witnesses/voting, staking for bandwidth or energy (freezing), TRC10, multi-signature
permissions (the owner key is the only permission), the solidified-block lag (solid = latest),
call_value on contract calls, memo/data of raw_data in the txID, the energy price of real
contracts (ganache gas is taken as energy) and the daily reset of free bandwidth.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import coincurve
from Crypto.Hash import keccak
from tronpy.keys import to_base58check_address, to_hex_address
from tronpy.proto.transaction import _raw_data_to_protobuf, calculate_txid_from_raw_data

from chains.contracts import artifact

TRANSACTION_FEE_SUN = 1000  # per byte of bandwidth beyond the free allowance
ENERGY_FEE_SUN = 420
CREATE_ACCOUNT_FEE_SUN = 100_000  # the bandwidth of an account-creating transaction, burnt
CREATE_NEW_ACCOUNT_FEE_SUN = 1_000_000  # the activation itself (getCreateNewAccountFeeInSystemContract)
FREE_NET_LIMIT = 600
INTRINSIC_GAS = 21_000
# Kept under the EVM's block gas limit (real TRON caps a call's energy too).
MAX_ENERGY_LIMIT = 10_000_000
# The EVM behind the fake pays gas from a huge balance: TRON accounts never run out of ETH.
EVM_GAS_BALANCE = hex(10**30)


class Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _keccak(data: bytes) -> bytes:
    return keccak.new(digest_bits=256, data=data).digest()


def hex_address(address: str) -> str:
    """41-prefixed hex of a base58 or hex TRON address."""
    return to_hex_address(address).lower()


def evm_of(tron_hex: str) -> str:
    return "0x" + tron_hex[2:]


class FakeTron:
    """The chain state; every method runs under one lock."""

    def __init__(self, evm: Any) -> None:
        self.evm = evm  # chains.devnodes.EvmDevNode
        self.lock = threading.RLock()
        self.balances: dict[str, int] = {}
        self.net_used: dict[str, int] = {}
        self.contracts: set[str] = set()  # hex 41 addresses that are TRC20 contracts on the EVM
        self.evm_accounts: set[str] = set()
        self.blocks: list[dict[str, Any]] = []
        self.infos: dict[int, list[dict[str, Any]]] = {}
        self.tx_block: dict[str, int] = {}
        # Orphaned transactions a stale index still reports: txID -> (transaction, its old info).
        self.stale_index: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.pending: list[dict[str, Any]] = []
        self.snapshots: dict[int, tuple[Any, ...]] = {}
        self.salt = 0
        self._produce_block([], [])

    # --- blocks ------------------------------------------------------------------------
    def _produce_block(self, txs: list[dict[str, Any]], infos: list[dict[str, Any]]) -> dict[str, Any]:
        number = len(self.blocks)
        parent = self.blocks[-1]["blockID"] if self.blocks else "0" * 64
        timestamp = int(time.time() * 1000)
        raw = {
            "number": number,
            "txTrieRoot": hashlib.sha256("".join(t["txID"] for t in txs).encode()).hexdigest(),
            "witness_address": "41" + "00" * 20,
            "parentHash": parent,
            "version": 30,
            "timestamp": timestamp,
        }
        digest = hashlib.sha256(json.dumps([raw, self.salt], sort_keys=True).encode()).hexdigest()
        block_id = number.to_bytes(8, "big").hex() + digest[16:]
        for info in infos:
            info["blockNumber"] = number
            info["blockTimeStamp"] = timestamp
        block = {"blockID": block_id, "block_header": {"raw_data": raw}, "transactions": txs}
        self.blocks.append(block)
        self.infos[number] = infos
        for tx in txs:
            self.tx_block[tx["txID"]] = number
        self.snapshots[number] = (
            copy.deepcopy(self.balances),
            copy.deepcopy(self.net_used),
            set(self.contracts),
            self.evm.snapshot(),
        )
        return block

    def mine(self, count: int = 1) -> list[int]:
        with self.lock:
            made = []
            for _ in range(count):
                txs, infos = [], []
                pending, self.pending = self.pending, []
                now_ms = int(time.time() * 1000)
                for tx in pending:
                    if tx["raw_data"]["expiration"] <= now_ms:
                        continue  # expired while pending: no producer includes it
                    try:
                        info = self._execute(tx)
                    except Refused:
                        continue  # no longer valid (e.g. funds spent meanwhile): dropped like a node does
                    txs.append(tx)
                    infos.append(info)
                made.append(self._produce_block(txs, infos)["block_header"]["raw_data"]["number"])
            return made

    def reorg(self, depth: int, stale_index: bool = False) -> list[int]:
        with self.lock:
            tip = len(self.blocks) - 1
            if not 1 <= depth <= tip:
                raise Refused("REORG_ERROR", f"depth must be between 1 and {tip}")
            fork = tip - depth
            balances, net_used, contracts, evm_snapshot = self.snapshots[fork]
            self.evm.revert(evm_snapshot)  # also discards every later EVM snapshot
            for number in range(fork + 1, tip + 1):
                orphaned = self.blocks[number]["transactions"]
                if stale_index:  # a block's infos are in the order of its transactions
                    infos = self.infos[number]
                    self.stale_index.update((tx["txID"], (tx, info)) for tx, info in zip(orphaned, infos, strict=True))
                for tx in orphaned:
                    self.tx_block.pop(tx["txID"], None)
                self.infos.pop(number, None)
                self.snapshots.pop(number, None)
            del self.blocks[fork + 1 :]
            self.balances, self.net_used, self.contracts = (
                copy.deepcopy(balances),
                copy.deepcopy(net_used),
                set(contracts),
            )
            self.snapshots[fork] = (balances, net_used, contracts, self.evm.snapshot())
            self.pending = []
            self.salt += 1
            return [self._produce_block([], [])["block_header"]["raw_data"]["number"] for _ in range(depth)]

    # --- transactions --------------------------------------------------------------------
    def broadcast(self, tx: dict[str, Any]) -> str:
        with self.lock:
            try:
                raw = tx["raw_data"]
                txid = tx["txID"]
                signatures = tx.get("signature") or []
                [contract] = raw["contract"]
                kind = contract["type"]
                value = contract["parameter"]["value"]
                owner = hex_address(value["owner_address"])
            except (KeyError, TypeError, ValueError):
                raise Refused("OTHER_ERROR", "malformed transaction") from None
            if kind not in ("TransferContract", "TriggerSmartContract"):
                raise Refused("CONTRACT_VALIDATE_ERROR", f"{kind} is not supported by this node")
            try:
                computed = calculate_txid_from_raw_data(raw)
            except (KeyError, TypeError, ValueError):
                raise Refused("OTHER_ERROR", "raw_data does not serialise") from None
            if computed != txid:
                raise Refused("SIGERROR", "txID is not the hash of raw_data")
            if not signatures:
                raise Refused("SIGERROR", "transaction is not signed")
            if self._recover(txid, signatures[0]) != owner:
                raise Refused("SIGERROR", "signature does not match the owner address")
            if raw["expiration"] <= int(time.time() * 1000):
                raise Refused("TRANSACTION_EXPIRATION_ERROR", "transaction expired")
            if not any(
                b["blockID"][12:16] == raw["ref_block_bytes"] and b["blockID"][16:32] == raw["ref_block_hash"]
                for b in self.blocks[-65536:]
            ):
                raise Refused("TAPOS_ERROR", "ref block is not on this chain")
            if txid in self.tx_block or any(p["txID"] == txid for p in self.pending):
                raise Refused("DUP_TRANSACTION_ERROR", "dup transaction")
            if owner not in self.balances:
                raise Refused("CONTRACT_VALIDATE_ERROR", "owner account does not exist")
            if kind == "TransferContract":
                amount = value["amount"]
                to = hex_address(value["to_address"])
                if amount <= 0 or to == owner:
                    raise Refused("CONTRACT_VALIDATE_ERROR", "bad amount or recipient")
                if self.balances[owner] < amount:
                    raise Refused("CONTRACT_VALIDATE_ERROR", "balance is not sufficient")
            elif hex_address(value["contract_address"]) not in self.contracts:
                raise Refused("CONTRACT_VALIDATE_ERROR", "no contract at contract_address")
            stored = copy.deepcopy(tx)
            stored["raw_data_hex"] = _raw_data_to_protobuf(raw).SerializeToString().hex()
            self.pending.append(stored)
            return txid

    @staticmethod
    def _recover(txid: str, signature_hex: str) -> str:
        try:
            signature = bytearray(bytes.fromhex(signature_hex))
            if len(signature) != 65:
                return ""
            if signature[64] >= 27:
                signature[64] -= 27
            public = coincurve.PublicKey.from_signature_and_message(bytes(signature), bytes.fromhex(txid), hasher=None)
        except (ValueError, TypeError, Exception):  # coincurve raises its own errors on bad input
            return ""
        return "41" + _keccak(public.format(compressed=False)[1:])[-20:].hex()

    def _bandwidth_fee(self, owner: str, tx: dict[str, Any]) -> tuple[int, int]:
        size = len(tx["raw_data_hex"]) // 2 + 65 * len(tx["signature"]) + 64
        used = self.net_used.get(owner, 0)
        if used + size <= FREE_NET_LIMIT:
            self.net_used[owner] = used + size
            return size, 0
        return size, size * TRANSACTION_FEE_SUN

    def _execute(self, tx: dict[str, Any]) -> dict[str, Any]:
        raw = tx["raw_data"]
        contract = raw["contract"][0]
        value = contract["parameter"]["value"]
        owner = hex_address(value["owner_address"])
        info: dict[str, Any] = {"id": tx["txID"], "receipt": {}}
        if contract["type"] == "TransferContract":
            to = hex_address(value["to_address"])
            if to in self.balances:
                net_usage, net_fee = self._bandwidth_fee(owner, tx)
                create_fee = 0
            else:  # creating an account burns its own bandwidth fee, not the free allowance
                net_usage, net_fee = 0, 0
                create_fee = CREATE_NEW_ACCOUNT_FEE_SUN + CREATE_ACCOUNT_FEE_SUN
            cost = value["amount"] + net_fee + create_fee
            if self.balances.get(owner, 0) < cost:
                raise Refused("CONTRACT_VALIDATE_ERROR", "balance is not sufficient")
            self.balances[owner] -= cost
            self.balances[to] = self.balances.get(to, 0) + value["amount"]
            info["fee"] = net_fee + create_fee
            info["receipt"] = {"net_usage": net_usage} if not net_fee else {"net_fee": net_fee}
            tx["ret"] = [{"contractRet": "SUCCESS"}]
            return info
        net_usage, net_fee = self._bandwidth_fee(owner, tx)
        return self._execute_contract(tx, owner, value, raw, net_usage, net_fee, info)

    def _execute_contract(
        self,
        tx: dict[str, Any],
        owner: str,
        value: dict[str, Any],
        raw: dict[str, Any],
        net_usage: int,
        net_fee: int,
        info: dict[str, Any],
    ) -> dict[str, Any]:
        balance = self.balances.get(owner, 0) - net_fee
        if balance < 0:
            raise Refused("CONTRACT_VALIDATE_ERROR", "balance is not sufficient for bandwidth")
        energy_limit = min(min(raw.get("fee_limit", 0), balance) // ENERGY_FEE_SUN, MAX_ENERGY_LIMIT)
        sender = evm_of(owner)
        if owner not in self.evm_accounts:
            self._evm("evm_addAccount", [sender, ""])
            self._evm("personal_unlockAccount", [sender, "", 0])
            self._evm("evm_setAccountBalance", [sender, EVM_GAS_BALANCE])
            self.evm_accounts.add(owner)
        data = "0x" + value.get("data", "")
        gas_limit = INTRINSIC_GAS + 16 * (len(data) // 2) + energy_limit
        tx_hash = self._evm(
            "eth_sendTransaction",
            [
                {
                    "from": sender,
                    "to": evm_of(hex_address(value["contract_address"])),
                    "data": data,
                    "gas": hex(gas_limit),
                }
            ],
        )
        receipt = self._evm("eth_getTransactionReceipt", [tx_hash])
        gas_used = int(receipt["gasUsed"], 16)
        energy = max(0, gas_used - INTRINSIC_GAS - 16 * (len(data) // 2))
        energy_fee = min(energy, energy_limit) * ENERGY_FEE_SUN
        self.balances[owner] -= net_fee + energy_fee
        if int(receipt["status"], 16) == 1:
            result = "SUCCESS"
        else:
            result = "OUT_OF_ENERGY" if gas_used >= gas_limit else "REVERT"
        tx["ret"] = [{"contractRet": result}]
        info.update(
            {
                "fee": net_fee + energy_fee,
                "contract_address": hex_address(value["contract_address"]),
                "contractResult": [""],
                "receipt": {
                    "energy_fee": energy_fee,
                    "energy_usage_total": energy,
                    **({"net_usage": net_usage} if not net_fee else {"net_fee": net_fee}),
                    "result": result,
                },
                "log": [
                    {
                        "address": log["address"][2:].lower(),
                        "topics": [t[2:] for t in log["topics"]],
                        "data": log["data"][2:],
                    }
                    for log in receipt["logs"]
                ],
            }
        )
        if result != "SUCCESS":
            info["result"] = "FAILED"
            info["resMessage"] = result.encode().hex()
        return info

    def _evm(self, method: str, params: list[Any]) -> Any:
        answer = self.evm.w3.provider.make_request(method, params)
        if "error" in answer:
            raise Refused("CONTRACT_EXE_ERROR", str(answer["error"].get("message", ""))[:200])
        return answer["result"]

    # --- test-only --------------------------------------------------------------------------
    def fund(self, address: str, amount: int) -> int:
        """Credit TRX out of band, like a genesis allocation: a later reorg keeps it."""
        with self.lock:
            key = hex_address(address)
            for balances, *_ in self.snapshots.values():
                balances[key] = balances.get(key, 0) + amount
            self.balances[key] = self.balances.get(key, 0) + amount
            return self.balances[key]

    def deploy(self, contract: str, args: list[Any], owner: str = "", supply: int = 0) -> str:
        with self.lock:
            evm_address = self.evm.deploy(contract, *args)
            tron = "41" + evm_address[2:].lower()
            self.contracts.add(tron)
            if owner and supply:
                token = self.evm.contract(evm_address, contract)
                self.evm.transact(
                    token.functions.mint(self.evm.w3.to_checksum_address(evm_of(hex_address(owner))), supply)
                )
            return to_base58check_address(tron)

    # --- reads ------------------------------------------------------------------------------
    def constant_call(self, body: dict[str, Any]) -> dict[str, Any]:
        contract = hex_address(body["contract_address"])
        if "data" in body:
            data = body["data"]
        else:
            selector = _keccak(body["function_selector"].encode())[:4].hex()
            data = selector + body.get("parameter", "")
        call = {"to": evm_of(contract), "data": "0x" + data}
        if body.get("owner_address"):
            call["from"] = evm_of(hex_address(body["owner_address"]))
        answer = self.evm.w3.provider.make_request("eth_call", [call, "latest"])
        if "error" in answer:
            return {
                "result": {"code": "CONTRACT_EXE_ERROR", "message": b"REVERT opcode executed".hex()},
                "constant_result": [""],
            }
        energy = self.estimate_energy(call)
        return {"result": {"result": True}, "constant_result": [answer["result"][2:]], "energy_used": energy or 0}

    def estimate_energy(self, call: dict[str, Any]) -> int | None:
        """The energy a call would use (as _execute_contract counts it), None if it reverts."""
        answer = self.evm.w3.provider.make_request("eth_estimateGas", [{**call, "gasPrice": "0x0"}, "latest"])
        if "error" in answer:
            return None
        return max(0, int(answer["result"], 16) - INTRINSIC_GAS - 16 * (len(call["data"]) // 2))


ADDRESS_FIELDS = ("owner_address", "to_address", "contract_address")


def _visible(obj: Any) -> Any:
    """Copy of a block/transaction with addresses in base58 (the API's visible=true form)."""
    if isinstance(obj, dict):
        return {
            k: (to_base58check_address(v) if k in ADDRESS_FIELDS and isinstance(v, str) else _visible(v))
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_visible(v) for v in obj]
    return obj


class TronFakeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], *, evm: Any, block_interval: float = 0.0, state: FakeTron | None = None
    ) -> None:
        self.state = state if state is not None else FakeTron(evm)
        super().__init__(address, _Handler)
        self._stop = threading.Event()
        if block_interval > 0:
            threading.Thread(target=self._produce, args=(block_interval,), daemon=True).start()

    def _produce(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.state.mine(1)

    def shutdown(self) -> None:
        self._stop.set()
        super().shutdown()


class _Handler(BaseHTTPRequestHandler):
    server: TronFakeServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            body = None
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if body is None or not isinstance(body, dict):
            self._send(400, {"Error": "class org.json.JSONException : invalid JSON"})
            return
        try:
            answer = self._route(parts.path.rstrip("/"), {**query, **body})
        except Refused as exc:
            answer = {"result": False, "code": exc.code, "message": exc.message.encode().hex()}
        except (KeyError, TypeError, ValueError) as exc:
            answer = {"Error": f"class java.lang.IllegalArgumentException : {type(exc).__name__}"}
        self._send(200, answer)

    def _send(self, status: int, answer: Any) -> None:
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, path: str, body: dict[str, Any]) -> Any:
        state = self.server.state
        visible = str(body.get("visible", "")).lower() == "true"
        show = _visible if visible else (lambda x: x)
        with state.lock:
            if path in ("/wallet/getnowblock", "/walletsolidity/getnowblock"):
                return show(state.blocks[-1])
            if path in ("/wallet/getblockbynum", "/walletsolidity/getblockbynum"):
                num = int(body["num"])
                return show(state.blocks[num]) if 0 <= num < len(state.blocks) else {}
            if path == "/wallet/getblockbyid":
                return next((show(b) for b in state.blocks if b["blockID"] == body["value"]), {})
            if path in ("/wallet/gettransactioninfobyblocknum", "/walletsolidity/gettransactioninfobyblocknum"):
                return state.infos.get(int(body["num"]), [])
            if path in ("/wallet/gettransactioninfobyid", "/walletsolidity/gettransactioninfobyid"):
                number = state.tx_block.get(body["value"])
                if number is None:
                    return state.stale_index.get(body["value"], ({}, {}))[1]
                return next(i for i in state.infos[number] if i["id"] == body["value"])
            if path in ("/wallet/gettransactionbyid", "/walletsolidity/gettransactionbyid"):
                number = state.tx_block.get(body["value"])
                if number is None and body["value"] in state.stale_index:
                    return show(state.stale_index[body["value"]][0])
                pool = state.blocks[number]["transactions"] if number is not None else state.pending
                return next((show(t) for t in pool if t["txID"] == body["value"]), {})
            if path == "/wallet/getnodeinfo":
                head = state.blocks[-1]
                text = f"Num:{len(state.blocks) - 1},ID:{head['blockID']}"
                return {"block": text, "solidityBlock": text, "configNodeInfo": {"codeVersion": "fake"}}
            if path == "/wallet/getaccount":
                key = hex_address(body["address"])
                if key not in state.balances:
                    return {}
                return {"address": to_base58check_address(key) if visible else key, "balance": state.balances[key]}
            if path == "/wallet/getaccountresource":
                key = hex_address(body["address"])
                return {"freeNetLimit": FREE_NET_LIMIT, "freeNetUsed": state.net_used.get(key, 0)}
            if path == "/wallet/getchainparameters":
                return {
                    "chainParameter": [
                        {"key": "getTransactionFee", "value": TRANSACTION_FEE_SUN},
                        {"key": "getEnergyFee", "value": ENERGY_FEE_SUN},
                        {"key": "getCreateAccountFee", "value": CREATE_ACCOUNT_FEE_SUN},
                        {"key": "getCreateNewAccountFeeInSystemContract", "value": CREATE_NEW_ACCOUNT_FEE_SUN},
                        {"key": "getFreeNetLimit", "value": FREE_NET_LIMIT},
                    ]
                }
            if path == "/wallet/getsignweight":
                txid = calculate_txid_from_raw_data(body["raw_data"])
                owner = hex_address(body["raw_data"]["contract"][0]["parameter"]["value"]["owner_address"])
                return {
                    "permission": {
                        "type": "Owner",
                        "permission_name": "owner",
                        "threshold": 1,
                        "keys": [{"address": owner, "weight": 1}],
                    },
                    "transaction": {"result": {"result": True}, "transaction": {"txID": txid}},
                }
            if path in ("/wallet/triggerconstantcontract", "/wallet/triggersmartcontract"):
                return state.constant_call(body)
            if path == "/wallet/estimateenergy":
                answer = state.constant_call(body)
                if answer["result"].get("result") is not True:
                    return {"result": answer["result"]}
                return {"result": {"result": True}, "energy_required": answer["energy_used"]}
            if path == "/wallet/broadcasttransaction":
                return {"result": True, "txid": state.broadcast(body)}
            if path == "/fake/mine":
                return {"blocks": state.mine(int(body.get("blocks", 1)))}
            if path == "/fake/reorg":
                stale = str(body.get("stale_index", "")).lower() == "true"
                return {"blocks": state.reorg(int(body["depth"]), stale_index=stale)}
            if path == "/fake/fund":
                return {"balance": state.fund(body["address"], int(body["amount"]))}
            if path == "/fake/deploy":
                artifact(body["contract"])  # KeyError for an unknown contract
                address = state.deploy(
                    body["contract"], list(body.get("args", [])), body.get("owner", ""), int(body.get("supply", 0))
                )
                return {"address": address}
        return {"Error": f"unknown path {path}"}
