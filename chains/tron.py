"""
TRON adapter (TRX and TRC20) over the TRON HTTP API, with tronpy for addresses and transactions.

Reading a block costs two calls: /wallet/getblockbynum (TRX TransferContracts, contract calls and
each transaction's contractRet) and /wallet/gettransactioninfobyblocknum (TRC20 Transfer logs and
receipts). A transfer counts as successful only when the transaction's contractRet is SUCCESS
(and, for a contract call, its receipt result too). A contract call of transfer(address,uint256)
that failed leaves no log: it is reported from its calldata with success=False and index -1, so
the scanner records the "fake deposit" and credits nothing.

Addresses, contracts and match keys are base58check ("T..."); a TRC20 Transfer's index is the
position of its log within the transaction.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Collection
from typing import Any

from tronpy import Tron
from tronpy.contract import Contract
from tronpy.keys import is_address, to_base58check_address, to_hex_address
from tronpy.proto.transaction import _raw_data_to_protobuf
from tronpy.providers import HTTPProvider

from chains.base import Block, ChainError, FeeTerms, Shortfall, SignedTx, Transfer, TxRejected, TxStatus, UnsignedTx
from chains.rpc import HttpNode

TRANSFER_TOPIC = "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
SELECTOR_TRANSFER = "a9059cbb"
SELECTOR_TRANSFER_FROM = "23b872dd"
TRC20_ABI = [
    {
        "name": "transfer",
        "type": "function",
        "stateMutability": "nonpayable",
        "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
        "outputs": [{"name": "", "type": "bool"}],
    }
]


# Chain parameters a node may not publish (getchainparameters), at mainnet's values.
CHAIN_DEFAULTS = {
    "getTransactionFee": 1000,  # sun per byte of bandwidth beyond what the account has
    "getEnergyFee": 420,  # sun per unit of energy
    "getCreateAccountFee": 100_000,  # the bandwidth of a transaction that creates an account, burnt
    "getCreateNewAccountFeeInSystemContract": 1_000_000,  # activation of a new account by a TRX transfer
}
# A transaction's bandwidth: its protobuf bytes, each signature, and the result a node stores.
SIGNATURE_BYTES = 65
RESULT_BYTES = 64


def _b58(hex41: str) -> str:
    return to_base58check_address(hex41)


def _word_address(word: str) -> str:
    return _b58("41" + word[-40:])


class TronAdapter:
    """ChainAdapter for TRON (chain_id "TRON")."""

    def __init__(
        self,
        *,
        url: str,
        connect_timeout: float = 2.0,
        read_timeout: float = 15.0,
        fee_fallback_sun: int = 1000,
        fee_limit_sun: int = 30_000_000,
    ) -> None:
        self.chain_id = "TRON"
        self.node = HttpNode(url, name="TRON node", connect_timeout=connect_timeout, read_timeout=read_timeout)
        # tronpy builds transactions offline (ref block fetched by us): its client never calls out.
        self._tron = Tron(HTTPProvider(self.node.url, timeout=read_timeout))
        self._fee_fallback = fee_fallback_sun
        self._fee_limit = fee_limit_sun

    def _post(self, path: str, payload: dict[str, Any]) -> Any:
        answer = self.node.post(path, payload, what=path)
        if isinstance(answer, dict) and "Error" in answer:
            raise ChainError(f"TRON node: {path} failed: {str(answer['Error'])[:200]}")
        return answer

    # --- reads -----------------------------------------------------------------------
    def tip_height(self) -> int:
        block = self._post("wallet/getnowblock", {})
        try:
            return int(block["block_header"]["raw_data"]["number"])
        except (KeyError, TypeError, ValueError):
            raise ChainError("TRON node: getnowblock answered a malformed block") from None

    def _block_raw(self, height: int) -> dict[str, Any]:
        block = self._post("wallet/getblockbynum", {"num": height})
        if not isinstance(block, dict) or "blockID" not in block:
            raise ChainError(f"TRON node: no block at height {height}")
        return block

    def block_hash(self, height: int) -> str:
        return self._block_raw(height)["blockID"]

    def match_key(self, address: str) -> str:
        """base58check address; refuses anything that is not a TRON address."""
        if not isinstance(address, str) or not is_address(address):
            raise ValueError("not a TRON address")
        return _b58(to_hex_address(address))

    def block(self, height: int, watched: Collection[str] | None = None) -> Block:
        """The block at height with TRX transfers and TRC20 Transfer logs (of any contract).

        :raises ChainError: node down, no such block, or a malformed answer.
        """
        raw = self._block_raw(height)
        try:
            header = raw["block_header"]["raw_data"]
            if int(header.get("number", 0)) != height:
                raise ChainError(f"TRON node: asked block {height}, got another")
            txs = raw.get("transactions") or []
            infos: dict[str, dict[str, Any]] = {}
            if any(tx["raw_data"]["contract"][0]["type"] == "TriggerSmartContract" for tx in txs):
                answer = self._post("wallet/gettransactioninfobyblocknum", {"num": height})
                if not isinstance(answer, list):
                    raise ChainError(f"TRON node: malformed transaction infos of block {height}")
                infos = {info["id"]: info for info in answer}
            transfers: list[Transfer] = []
            for tx in txs:
                transfers.extend(self._tx_transfers(tx, infos, watched))
            return Block(
                number=height,
                hash=raw["blockID"],
                parent_hash=header["parentHash"],
                timestamp=int(header["timestamp"]) // 1000,
                transfers=transfers,
            )
        except ChainError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ChainError(f"TRON node: malformed block {height}") from None

    def blocks(self, first: int, last: int, watched: Collection[str] | None = None) -> list[Block]:
        """Blocks first..last (inclusive), each as block() gives it, checked to form one chain.

        :raises ChainError: as block(), or the chain changed while the blocks were read.
        """
        found = [self.block(height, watched) for height in range(first, last + 1)]
        for previous, block in itertools.pairwise(found):
            if block.parent_hash != previous.hash:
                raise ChainError(f"{self.chain_id} node: the chain changed while blocks were read")
        return found

    def _tx_transfers(
        self, tx: dict[str, Any], infos: dict[str, dict[str, Any]], watched: Collection[str] | None
    ) -> list[Transfer]:
        txid = tx["txID"]
        contract = tx["raw_data"]["contract"][0]
        value = contract["parameter"]["value"]
        ret = (tx.get("ret") or [{}])[0].get("contractRet")
        if contract["type"] == "TransferContract":
            to = _b58(value["to_address"])
            if watched is not None and to not in watched:
                return []
            return [
                Transfer(
                    tx_hash=txid,
                    index=-1,
                    from_address=_b58(value["owner_address"]),
                    to_address=to,
                    match_key=to,
                    amount_base_units=int(value["amount"]),
                    contract=None,
                    success=ret == "SUCCESS",
                )
            ]
        if contract["type"] != "TriggerSmartContract":
            return []
        info = infos.get(txid)
        if info is None:
            raise ChainError(f"TRON node: no transaction info for {txid}")
        receipt_result = info.get("receipt", {}).get("result")
        success = ret == "SUCCESS" and receipt_result == "SUCCESS"
        found: list[Transfer] = []
        for index, log in enumerate(info.get("log") or []):
            topics = log.get("topics") or []
            data = log.get("data") or ""
            if len(topics) != 3 or topics[0].lower() != TRANSFER_TOPIC or len(data) != 64:
                continue
            to = _word_address(topics[2])
            if watched is not None and to not in watched:
                continue
            found.append(
                Transfer(
                    tx_hash=txid,
                    index=index,
                    from_address=_word_address(topics[1]),
                    to_address=to,
                    match_key=to,
                    amount_base_units=int(data, 16),
                    contract=_b58("41" + log["address"][-40:]),
                    success=success,
                )
            )
        if success or found:
            return found
        data = value.get("data") or ""
        if data[:8] == SELECTOR_TRANSFER and len(data) >= 136:
            sender, to, amount = _b58(value["owner_address"]), _word_address(data[8:72]), int(data[72:136], 16)
        elif data[:8] == SELECTOR_TRANSFER_FROM and len(data) >= 200:
            sender, to, amount = _word_address(data[8:72]), _word_address(data[72:136]), int(data[136:200], 16)
        else:
            return []
        if watched is not None and to not in watched:
            return []
        return [
            Transfer(
                tx_hash=txid,
                index=-1,
                from_address=sender,
                to_address=to,
                match_key=to,
                amount_base_units=amount,
                contract=_b58(value["contract_address"]),
                success=False,
            )
        ]

    def balance(self, address: str, contract: str | None = None) -> int:
        owner = to_hex_address(self.match_key(address))
        if contract is None:
            account = self._post("wallet/getaccount", {"address": owner})
            if not isinstance(account, dict):
                raise ChainError("TRON node: getaccount answered a malformed account")
            return int(account.get("balance", 0))
        answer = self._post(
            "wallet/triggerconstantcontract",
            {
                "owner_address": owner,
                "contract_address": to_hex_address(self.match_key(contract)),
                "function_selector": "balanceOf(address)",
                "parameter": owner[2:].rjust(64, "0"),
            },
        )
        try:
            if answer["result"].get("result") is not True:
                raise ChainError("TRON node: balanceOf failed (not a token contract?)")
            return int(answer["constant_result"][0][:64], 16)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ChainError("TRON node: balanceOf answered a malformed result") from None

    def fee_estimate(self) -> int:
        """Sun per byte of bandwidth (getTransactionFee), the configured fallback if the node has none."""
        return self.chain_parameters().get("getTransactionFee", self._fee_fallback)

    def chain_parameters(self) -> dict[str, int]:
        """The fee parameters of the chain (getchainparameters), mainnet's values for those it omits."""
        answer = self._post("wallet/getchainparameters", {})
        found = {
            item["key"]: item["value"]
            for item in ((answer or {}).get("chainParameter", []) if isinstance(answer, dict) else [])
            if isinstance(item, dict) and isinstance(item.get("value"), int) and "key" in item
        }
        return {**CHAIN_DEFAULTS, **found}

    def estimate_energy(self, *, owner: str, contract: str, to_address: str, amount_base_units: int) -> int | None:
        """
        The energy a TRC20 transfer(to, amount) from owner needs now: /wallet/estimateenergy, else
        the energy_used of /wallet/triggerconstantcontract (nodes without the estimate API).

        None when the call would fail (the owner lacks the tokens, the token refuses it).
        """
        body = {
            "owner_address": to_hex_address(self.match_key(owner)),
            "contract_address": to_hex_address(self.match_key(contract)),
            "function_selector": "transfer(address,uint256)",
            "parameter": to_hex_address(self.match_key(to_address))[2:].rjust(64, "0")
            + format(amount_base_units, "064x"),
        }
        try:
            answer = self._post("wallet/estimateenergy", body)
            if isinstance(answer, dict) and (answer.get("result") or {}).get("result") is True:
                return int(answer["energy_required"])
            answer = self._post("wallet/triggerconstantcontract", body)
            if isinstance(answer, dict) and (answer.get("result") or {}).get("result") is True:
                return int(answer.get("energy_used", 0))
        except (KeyError, TypeError, ValueError):
            raise ChainError("TRON node: energy estimate answered a malformed result") from None
        return None

    def account_exists(self, address: str) -> bool:
        """Whether the account is activated on chain (a TRX transfer to a new one pays its activation)."""
        account = self._post("wallet/getaccount", {"address": to_hex_address(self.match_key(address))})
        return isinstance(account, dict) and bool(account)

    def transfer_fee(self, unsigned: UnsignedTx) -> tuple[int, str]:
        """
        The TRX (sun) a transaction burns besides its energy, and what that covers: activating a new
        recipient of a TRX transfer (getCreateNewAccountFeeInSystemContract plus the account-creation
        bandwidth, getCreateAccountFee), or else the bandwidth its bytes need beyond what the owner
        has free today (getTransactionFee per byte).
        """
        raw = unsigned.payload._raw_data  # type: ignore[attr-defined]
        contract = raw["contract"][0]
        params = self.chain_parameters()
        if contract["type"] == "TransferContract" and not self.account_exists(
            _b58(to_hex_address(contract["parameter"]["value"]["to_address"]))
        ):
            fee = params["getCreateNewAccountFeeInSystemContract"] + params["getCreateAccountFee"]
            return fee, "the activation of the new recipient account"
        size = len(_raw_data_to_protobuf(raw).SerializeToString()) + SIGNATURE_BYTES + RESULT_BYTES
        resource = self._post("wallet/getaccountresource", {"address": to_hex_address(unsigned.from_address)})
        resource = resource if isinstance(resource, dict) else {}
        free = int(resource.get("freeNetLimit", 0)) - int(resource.get("freeNetUsed", 0))
        free += int(resource.get("NetLimit", 0)) - int(resource.get("NetUsed", 0))
        if size <= free:
            return 0, "bandwidth (free)"
        return size * params["getTransactionFee"], f"bandwidth of {size} bytes"

    # --- writes ----------------------------------------------------------------------
    def build_transfer(
        self,
        *,
        from_address: str,
        to_address: str,
        amount_base_units: int,
        contract: str | None = None,
        fee_limit_sun: int | None = None,
        expiration_ms: int | None = None,
    ) -> UnsignedTx:
        """A tronpy Transaction (TRX TransferContract or TRC20 transfer call), built offline on the
        node's current block; the signer calls `payload.sign(PrivateKey)` within its expiry (60 s
        unless expiration_ms says otherwise). Past it, no node accepts or includes it."""
        if amount_base_units <= 0:
            raise ValueError("amount must be positive")
        sender = self.match_key(from_address)
        recipient = self.match_key(to_address)
        ref_block_id = self._post("wallet/getnowblock", {}).get("blockID")
        if not isinstance(ref_block_id, str) or len(ref_block_id) != 64:
            raise ChainError("TRON node: getnowblock answered no block id")
        if contract is None:
            builder = self._tron.trx.transfer(sender, recipient, amount_base_units)
        else:
            token = Contract(addr=self.match_key(contract), abi=TRC20_ABI, client=self._tron)
            builder = token.functions.transfer.with_owner(sender)(recipient, amount_base_units)
            builder = builder.fee_limit(fee_limit_sun if fee_limit_sun is not None else self._fee_limit)
        if expiration_ms is not None:
            builder = builder.expiration(expiration_ms)
        tx = builder.build(offline=True, ref_block_id=ref_block_id)
        terms = FeeTerms(fee_limit=int(tx._raw_data.get("fee_limit", 0)) or None)
        return UnsignedTx(chain_id=self.chain_id, from_address=sender, payload=tx, terms=terms)

    def shortfall(self, unsigned: UnsignedTx, *, reserved_native: int = 0, reserved_token: int = 0) -> Shortfall | None:
        """
        What the owner lacks to pay this transfer now (TRX for the amount and fees, or the token amount), or None.

        A TRX transfer needs its amount and transfer_fee (bandwidth, or a new recipient's
        activation); a TRC20 call its fee_limit (the most its energy may burn) and its bandwidth.
        reserved_native / reserved_token: what the owner's transfers not in a block yet already promise.
        """
        raw = unsigned.payload._raw_data  # type: ignore[attr-defined]
        contract = raw["contract"][0]
        value = contract["parameter"]["value"]
        owner = unsigned.from_address
        trx = self.balance(owner) - reserved_native
        fee, covers = self.transfer_fee(unsigned)
        if contract["type"] == "TransferContract":
            needed = int(value["amount"]) + fee
            if trx < needed:
                return Shortfall(address=owner, contract=None, free=trx, needed=needed, what=f"amount and {covers}")
            return None
        needed = int(raw.get("fee_limit", 0)) + fee
        if trx < needed:
            return Shortfall(
                address=owner, contract=None, free=trx, needed=needed, what=f"the call's fee limit and {covers}"
            )
        amount = int(str(value["data"])[-64:], 16)
        contract_address = to_base58check_address(value["contract_address"])
        tokens = self.balance(owner, contract=contract_address) - reserved_token
        if tokens < amount:
            return Shortfall(address=owner, contract=contract_address, free=tokens, needed=amount, what="amount")
        return None

    def never_included(self, signed: SignedTx, *, margin_ms: int) -> bool:
        """
        Whether a signed transaction is in no block and can never be, decided on solidified blocks only.

        True once the solid head is past the transaction's expiry (plus margin_ms) and none of the
        solid blocks from its reference block (chosen when it was built) up to the first one past
        that expiry holds it: producers include a transaction only before it expires. Each block is
        read by number, so a node (or a load-balanced backend) that lacks one raises instead of
        answering "not found". False while undecided.
        """
        raw = json.loads(signed.raw)["raw_data"]
        deadline = int(raw["expiration"]) + margin_ms
        head = self._solid_block(None)
        head_number, head_time = head["number"], head["timestamp"]
        if head_time <= deadline:
            return False
        # The reference block's number from its low 16 bits and the head's (it lies below the head).
        ref_number = head_number - ((head_number - int(raw["ref_block_bytes"], 16)) % 65536)
        for number in range(ref_number, head_number + 1):
            block = self._solid_block(number)
            if signed.tx_hash in block["txids"]:
                return False
            if block["timestamp"] > deadline:
                return True
        return False

    def _solid_block(self, number: int | None) -> dict[str, Any]:
        if number is None:
            block = self._post("walletsolidity/getnowblock", {})
        else:
            block = self._post("walletsolidity/getblockbynum", {"num": number})
        try:
            raw = block["block_header"]["raw_data"]
            found = int(raw.get("number", 0))
            if number is not None and found != number:
                raise ValueError("another block")
            txids = {t["txID"] for t in block.get("transactions", [])}
            return {"number": found, "timestamp": int(raw["timestamp"]), "txids": txids}
        except (KeyError, TypeError, ValueError):
            raise ChainError(f"TRON node: no solid block {number if number is not None else 'head'}") from None

    def broadcast_irreversible(self, signed: SignedTx) -> str:
        """POST /wallet/broadcasttransaction with the signed transaction JSON (SignedTx.raw).

        :raises TxRejected: the node refused it (bad signature, expired, no funds...).
        """
        try:
            tx = json.loads(signed.raw)
        except ValueError:
            raise ValueError("a signed TRON transaction is its JSON") from None
        answer = self._post("wallet/broadcasttransaction", tx)
        if not isinstance(answer, dict):
            raise ChainError("TRON node: broadcasttransaction answered a malformed reply")
        if answer.get("result") is True:
            return answer.get("txid") or tx["txID"]
        code = str(answer.get("code", "UNKNOWN"))
        if code == "DUP_TRANSACTION_ERROR":
            return tx["txID"]  # a retry of a transaction the node already has
        try:
            message = bytes.fromhex(answer.get("message", "")).decode(errors="replace")
        except ValueError:
            message = str(answer.get("message", ""))
        raise TxRejected(f"TRON node refused the transaction: {code} {message[:200]}")

    def tx_status(self, tx_hash: str) -> TxStatus:
        """
        Whether and where a transaction was mined: block_hash is the id of the block that holds it.

        The transaction index (gettransactioninfobyid) gives only a height; the block the node has
        at that height must hold the transaction. When it does not (its block was replaced while
        the index still names it, or a load-balanced API answered from backends that disagree),
        the transaction is reported as in no block: the caller follows it as unmined.
        """
        # The info first: read the other way round, a transaction mined between the two reads came
        # back pending (no result yet) with the info of a mined one, and a success read as a failure.
        info = self._post("wallet/gettransactioninfobyid", {"value": tx_hash})
        tx = self._post("wallet/gettransactionbyid", {"value": tx_hash})
        if not tx:
            return TxStatus(tx_hash=tx_hash, found=False)
        if not info or "blockNumber" not in info:
            return TxStatus(tx_hash=tx_hash, found=True)
        ret = (tx.get("ret") or [{}])[0].get("contractRet")
        receipt_result = info.get("receipt", {}).get("result", "SUCCESS")
        try:
            number = int(info["blockNumber"])
            block = self._block_raw(number)
            held = {str(t["txID"]).lower() for t in block.get("transactions") or []}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ChainError(f"TRON node: malformed transaction info or block of {tx_hash}") from None
        if tx_hash.lower() not in held:
            return TxStatus(tx_hash=tx_hash, found=True)
        try:
            transfers = self._log_transfers(tx_hash, info)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ChainError(f"TRON node: malformed logs of {tx_hash}") from None
        return TxStatus(
            tx_hash=tx_hash,
            found=True,
            success=ret == "SUCCESS" and receipt_result == "SUCCESS",
            block_number=number,
            block_hash=block["blockID"],
            fee=int(info.get("fee", 0)),
            transfers=transfers,
        )

    @staticmethod
    def _log_transfers(tx_hash: str, info: dict[str, Any]) -> tuple[Transfer, ...]:
        return tuple(
            Transfer(
                tx_hash=tx_hash,
                index=index,
                from_address=_word_address(log["topics"][1]),
                to_address=_word_address(log["topics"][2]),
                match_key=_word_address(log["topics"][2]),
                amount_base_units=int(log["data"], 16),
                contract=_b58("41" + log["address"][-40:]),
                success=True,
            )
            for index, log in enumerate(info.get("log") or [])
            if len(log.get("topics") or []) == 3
            and str(log["topics"][0]).lower() == TRANSFER_TOPIC
            and len(log.get("data") or "") == 64
        )
