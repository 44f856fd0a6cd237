"""
BTC adapter over Bitcoin Core's JSON-RPC (also bcoin's, which differs in a few answers).

- Outputs are matched by scriptPubKey hex, so the node's address encoding (bcoin's regtest
  "rb1..." against Core's "bcrt1...") does not matter.
- Amounts are read from the block's output values as exact Decimals (JSON parsed with
  parse_float=Decimal) and turned into integer satoshis; a value finer than 1 satoshi is refused.
- Full transactions: `getblock HASH 2` on Core, `getblock HASH true true` on bcoin; the adapter
  tries Core's form first and remembers which one the node speaks.
- Coinbase outputs are not reported: they cannot be spent for 100 blocks and are no deposit.
- Every input of every non-coinbase transaction is reported (`Block.spends`), whatever the watch
  list: only the caller knows which outpoints are its own (the exchange's UTXO set).
- `sendrawtransaction` answers a txid even when bcoin's mempool refuses the transaction, so a
  broadcast counts only once the transaction is in the mempool (or a block).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import base58

from chains.base import Block, ChainError, FeeTerms, SignedTx, Spend, Transfer, TxRejected, TxStatus, UnsignedTx
from chains.codecs import hash160, segwit_decode
from chains.rpc import HttpNode, RpcError, decimal_float

# Importing bitcoinlib writes its data folder; keep it inside the project, not in $HOME.
os.environ.setdefault("BCL_DATA_DIR", str(Path(__file__).resolve().parent.parent / "var" / "bitcoinlib"))

from bitcoinlib.transactions import Transaction

SATS_PER_BTC = Decimal(100_000_000)
# P2WPKH output dust limit (Core's default relay policy).
DUST_SATS = 294

# hrps of segwit addresses and base58 version bytes (P2PKH, P2SH) per network.
NETWORKS: dict[str, dict[str, Any]] = {
    "mainnet": {"hrps": ("bc",), "p2pkh": 0x00, "p2sh": 0x05, "bitcoinlib": "bitcoin"},
    "testnet": {"hrps": ("tb",), "p2pkh": 0x6F, "p2sh": 0xC4, "bitcoinlib": "testnet"},
    # Core's regtest uses bcrt, bcoin's rb: both are accepted.
    "regtest": {"hrps": ("bcrt", "rb"), "p2pkh": 0x6F, "p2sh": 0xC4, "bitcoinlib": "regtest"},
}


def p2wpkh_script(public_key: bytes) -> str:
    """scriptPubKey hex of the P2WPKH output of a compressed public key."""
    return "0014" + hash160(public_key).hex()


def address_to_script(address: str, network: str) -> str:
    """scriptPubKey hex of a P2WPKH/P2WSH/P2TR, P2PKH or P2SH address of network.

    :raises ValueError: not a valid address of that network.
    """
    params = NETWORKS[network]
    if not isinstance(address, str) or not address:
        raise ValueError("empty address")
    if address.lower().startswith(tuple(h + "1" for h in params["hrps"])):
        hrp, version, program = segwit_decode(address)
        if hrp not in params["hrps"]:
            raise ValueError("address of another network")
        op = 0 if version == 0 else 0x50 + version
        return f"{op:02x}{len(program):02x}{program.hex()}"
    try:
        raw = base58.b58decode_check(address)
    except ValueError:
        raise ValueError("not a bitcoin address") from None
    if len(raw) != 21:
        raise ValueError("not a bitcoin address")
    if raw[0] == params["p2pkh"]:
        return "76a914" + raw[1:].hex() + "88ac"
    if raw[0] == params["p2sh"]:
        return "a914" + raw[1:].hex() + "87"
    raise ValueError("address of another network")


def p2wpkh_vsize(inputs: int, outputs: int) -> int:
    """Virtual size of a transaction spending P2WPKH inputs to P2WPKH outputs, rounded up a little.

    build_transfer prices its fee with it; coin selection must use the same figure to pick
    inputs the builder then uses all of.
    """
    # ~68 vB per input, 31 per output, 11 of overhead.
    return 11 + 68 * inputs + 31 * outputs + 2


def btc_to_sats(value: object) -> int:
    """Exact satoshis of a JSON BTC amount parsed as Decimal.

    :raises ValueError: a float, a negative value or a value finer than one satoshi.
    """
    if not isinstance(value, (Decimal, int)) or isinstance(value, bool):
        raise ValueError("amount must be parsed as Decimal")
    sats = Decimal(value) * SATS_PER_BTC
    if sats != sats.to_integral_value() or sats < 0:
        raise ValueError("amount is not a whole number of satoshis")
    return int(sats)


def raw_outputs(raw_hex: str) -> list[tuple[int, int, str]]:
    """(vout, satoshis, scriptPubKey hex) of every output of a serialized transaction."""
    tx = Transaction.parse_hex(raw_hex, strict=False)
    return [(index, int(out.value), out.lock_script.hex()) for index, out in enumerate(tx.outputs)]


@dataclass(frozen=True)
class Utxo:
    """An unspent output the wallet tracks: what a BTC transfer spends."""

    txid: str
    vout: int
    value_sats: int
    script_hex: str  # scriptPubKey of the output (P2WPKH: 0014 + hash160)
    public_key_hex: str = ""  # compressed public key owning it, needed to sign P2WPKH


class BtcAdapter:
    """ChainAdapter for Bitcoin (chain_id "BTC")."""

    def __init__(
        self,
        *,
        url: str,
        network: str = "regtest",
        connect_timeout: float = 2.0,
        read_timeout: float = 15.0,
        fee_fallback_sat_vb: int = 10,
        confirm_target: int = 6,
        mempool_wait: float = 2.0,
    ) -> None:
        if network not in NETWORKS:
            raise ValueError(f"BTC network must be one of {sorted(NETWORKS)}")
        self.chain_id = "BTC"
        self.network = network
        self.node = HttpNode(
            url,
            name="BTC node",
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            parse_float=decimal_float,
        )
        self._fee_fallback = fee_fallback_sat_vb
        self._confirm_target = confirm_target
        self._mempool_wait = mempool_wait
        self._getblock_args: tuple[object, ...] | None = None  # (2,) on Core, (True, True) on bcoin

    # --- reads -----------------------------------------------------------------------
    def tip_height(self) -> int:
        return self._int(self.node.call("getblockcount"), "getblockcount")

    def block_hash(self, height: int) -> str:
        answer = self.node.call("getblockhash", [height])
        if not isinstance(answer, str) or len(answer) != 64:
            raise ChainError(f"BTC node: getblockhash {height} answered a malformed hash")
        return answer

    def match_key(self, address: str) -> str:
        return address_to_script(address, self.network)

    def _getblock(self, block_hash: str) -> dict[str, Any]:
        if self._getblock_args is None:
            try:
                answer = self.node.call("getblock", [block_hash, 2])
            except RpcError:
                answer = None
            if isinstance(answer, dict) and answer.get("tx") and isinstance(answer["tx"][0], dict):
                self._getblock_args = (2,)
                return answer
            self._getblock_args = (True, True)  # bcoin: verbose, details
        answer = self.node.call("getblock", [block_hash, *self._getblock_args])
        if not isinstance(answer, dict):
            raise ChainError(f"BTC node: getblock {block_hash} answered a malformed block")
        return answer

    def block(self, height: int, watched: Collection[str] | None = None) -> Block:
        """The block at height with every non-coinbase output (only those to `watched` scripts if given)
        and every non-coinbase input (`spends`).

        :raises ChainError: node down, no such block, or a malformed answer.
        """
        block_hash = self.block_hash(height)
        raw = self._getblock(block_hash)
        try:
            if raw["hash"] != block_hash or int(raw["height"]) != height:
                raise ChainError(f"BTC node: asked block {height}, got another")
            parent_hash = raw.get("previousblockhash") or "0" * 64
            transfers: list[Transfer] = []
            spends: list[Spend] = []
            for tx in raw["tx"]:
                if not isinstance(tx, dict):
                    raise ChainError(f"BTC node: block {height} came without its transactions")
                if tx["vin"] and "coinbase" in tx["vin"][0]:
                    continue
                txid = tx["txid"]
                if not isinstance(txid, str) or len(txid) != 64:
                    raise ValueError("malformed txid")
                for vin in tx["vin"]:
                    prev = vin["txid"]
                    if not isinstance(prev, str) or len(prev) != 64:
                        raise ValueError("malformed input")
                    spends.append(Spend(prev, int(vin["vout"]), txid))
                for out in tx["vout"]:
                    script = out["scriptPubKey"]
                    key = script["hex"].lower()
                    if watched is not None and key not in watched:
                        continue
                    address = script.get("address") or next(iter(script.get("addresses") or []), "")
                    transfers.append(
                        Transfer(
                            tx_hash=txid,
                            index=int(out["n"]),
                            from_address="",  # inputs carry no address without a prevout lookup
                            to_address=address,
                            match_key=key,
                            amount_base_units=btc_to_sats(out["value"]),
                            contract=None,
                            success=True,
                        )
                    )
            timestamp = int(raw["time"])
        except ChainError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            raise ChainError(f"BTC node: malformed block {height}") from None
        return Block(
            number=height,
            hash=block_hash,
            parent_hash=parent_hash,
            timestamp=timestamp,
            transfers=transfers,
            spends=spends,
        )

    def blocks(self, first: int, last: int, watched: Collection[str] | None = None) -> list[Block]:
        """Blocks first..last (inclusive), each as block() gives it, checked to form one chain.

        :raises ChainError: as block(), or the chain changed while the blocks were read.
        """
        found = [self.block(height, watched) for height in range(first, last + 1)]
        for previous, block in itertools.pairwise(found):
            if block.parent_hash != previous.hash:
                raise ChainError(f"{self.chain_id} node: the chain changed while blocks were read")
        return found

    def balance(self, address: str, contract: str | None = None) -> int:
        """Confirmed balance of any address by `scantxoutset` (Bitcoin Core only; bcoin has no such call).

        The exchange's own BTC holdings are never read this way: they come from the UTXO set the
        scanner keeps (utxos.selectors), which works on any node and knows what is locked by payouts.
        :raises ChainError: the node cannot scan the UTXO set.
        """
        if contract is not None:
            raise ValueError("BTC has no token contracts")
        script = self.match_key(address)
        answer = self.node.call("scantxoutset", ["start", [f"raw({script})"]])
        try:
            return btc_to_sats(answer["total_amount"])
        except (KeyError, TypeError, ValueError):
            raise ChainError("BTC node: scantxoutset answered a malformed total") from None

    def fee_estimate(self) -> int:
        """sat/vB from estimatesmartfee; the configured fallback when the node has no estimate."""
        try:
            answer = self.node.call("estimatesmartfee", [self._confirm_target])
        except RpcError:
            return self._fee_fallback
        rate = answer.get("feerate") if isinstance(answer, dict) else None
        if not isinstance(rate, (Decimal, int)) or rate <= 0:
            return self._fee_fallback  # bcoin answers -1 on a quiet chain, Core omits feerate
        sat_per_vb = -(-(Decimal(rate) * SATS_PER_BTC) // 1000)  # BTC/kvB -> sat/vB, rounded up
        return max(1, int(sat_per_vb))

    # --- writes ----------------------------------------------------------------------
    def build_transfer(
        self,
        *,
        from_address: str,
        to_address: str,
        amount_base_units: int,
        contract: str | None = None,
        utxos: Sequence[Utxo] = (),
        outputs: Sequence[tuple[str, int]] = (),
        change_address: str | None = None,
        fee_rate_sat_vb: int | None = None,
    ) -> UnsignedTx:
        """A segwit bitcoinlib Transaction spending `utxos`, paying to_address (plus `outputs`), change back.

        The wallet tracks its UTXOs (the scanner sees them arrive) and passes them in; inputs are
        used in the given order until amount + fee is covered.
        :raises ValueError: bad address, no or too few UTXOs.
        """
        if contract is not None:
            raise ValueError("BTC has no token contracts")
        payments = [(to_address, amount_base_units), *outputs]
        if any(amount <= DUST_SATS for _, amount in payments):
            raise ValueError("an output is at or below the dust limit")
        scripts = [(address_to_script(address, self.network), amount) for address, amount in payments]
        change_script = address_to_script(change_address or from_address, self.network)
        rate = fee_rate_sat_vb if fee_rate_sat_vb is not None else self.fee_estimate()
        want = sum(amount for _, amount in scripts)
        chosen: list[Utxo] = []
        for utxo in utxos:
            chosen.append(utxo)
            fee = self._vsize(len(chosen), len(scripts) + 1) * rate
            if sum(u.value_sats for u in chosen) >= want + fee:
                break
        else:
            raise ValueError("the UTXOs do not cover amount and fee")
        change = sum(u.value_sats for u in chosen) - want - fee
        network = NETWORKS[self.network]["bitcoinlib"]
        tx = Transaction(network=network, witness_type="segwit", version=2)
        for utxo in chosen:
            tx.add_input(
                prev_txid=utxo.txid,
                output_n=utxo.vout,
                value=utxo.value_sats,
                keys=[bytes.fromhex(utxo.public_key_hex)] if utxo.public_key_hex else None,
                witness_type="segwit",
                script_type="sig_pubkey",
            )
        for script, amount in scripts:
            tx.add_output(amount, lock_script=bytes.fromhex(script))
        if change > DUST_SATS:
            tx.add_output(change, lock_script=bytes.fromhex(change_script))
        tx.fee = sum(u.value_sats for u in chosen) - sum(o.value for o in tx.outputs)
        terms = FeeTerms(fee_rate=Decimal(rate), vsize=self._vsize(len(chosen), len(tx.outputs)), fee=tx.fee)
        return UnsignedTx(chain_id=self.chain_id, from_address=from_address, payload=tx, terms=terms)

    def build_spend_all(
        self, *, from_address: str, to_address: str, utxos: Sequence[Utxo], fee_sats: int
    ) -> UnsignedTx:
        """A segwit transaction spending every one of `utxos` to one output of to_address, less fee_sats.

        For a child-pays-for-parent bump (the child spends its parent's change with a fee that lifts
        both) and for consolidations: the fee is given, not priced by a rate.
        :raises ValueError: no UTXOs, a bad address, or what is left at or below the dust limit.
        """
        if not utxos:
            raise ValueError("a spend needs UTXOs")
        value = sum(u.value_sats for u in utxos) - fee_sats
        if value <= DUST_SATS or fee_sats < 0:
            raise ValueError("what is left after the fee is at or below the dust limit")
        tx = Transaction(network=NETWORKS[self.network]["bitcoinlib"], witness_type="segwit", version=2)
        for utxo in utxos:
            tx.add_input(
                prev_txid=utxo.txid,
                output_n=utxo.vout,
                value=utxo.value_sats,
                keys=[bytes.fromhex(utxo.public_key_hex)] if utxo.public_key_hex else None,
                witness_type="segwit",
                script_type="sig_pubkey",
            )
        tx.add_output(value, lock_script=bytes.fromhex(address_to_script(to_address, self.network)))
        tx.fee = fee_sats
        vsize = self._vsize(len(utxos), 1)
        terms = FeeTerms(fee_rate=(Decimal(fee_sats) / vsize).quantize(Decimal("0.001")), vsize=vsize, fee=fee_sats)
        return UnsignedTx(chain_id=self.chain_id, from_address=from_address, payload=tx, terms=terms)

    @staticmethod
    def _vsize(inputs: int, outputs: int) -> int:
        return p2wpkh_vsize(inputs, outputs)

    def broadcast_irreversible(self, signed: SignedTx) -> str:
        """sendrawtransaction, then check the mempool (or a block) really holds the transaction.

        :raises TxRejected: the node refused it or answered a txid but dropped it.
        """
        try:
            txid = self.node.call("sendrawtransaction", [signed.raw])
        except RpcError as exc:
            raise TxRejected(f"BTC node refused the transaction: {exc.node_message}") from None
        if not isinstance(txid, str) or (signed.tx_hash and txid != signed.tx_hash):
            raise ChainError("BTC node: sendrawtransaction answered another txid")
        # bcoin answers before its mempool has checked the transaction: poll a little.
        deadline = time.monotonic() + self._mempool_wait
        delay = 0.02
        while True:
            if txid in self._mempool() or self.tx_status(txid).block_hash:
                return txid
            if time.monotonic() >= deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
        raise TxRejected(f"BTC node answered {txid} but its mempool does not hold it (rejected)")

    def _mempool(self) -> set[str]:
        answer = self.node.call("getrawmempool")
        if not isinstance(answer, list):
            raise ChainError("BTC node: getrawmempool answered a malformed list")
        return set(answer)

    def tx_status(self, tx_hash: str) -> TxStatus:
        """Found in a block (success), in the mempool (found, not yet mined) or unknown.

        Mined transactions need the node's transaction index (Core -txindex, bcoin --index-tx).
        """
        try:
            tx = self.node.call("getrawtransaction", [tx_hash, True])
        except RpcError:
            tx = None
        if isinstance(tx, dict) and tx.get("blockhash"):
            header = self.node.call("getblockheader", [tx["blockhash"], True])
            return TxStatus(
                tx_hash=tx_hash,
                found=True,
                success=True,
                block_number=int(header["height"]),
                block_hash=tx["blockhash"],
            )
        return TxStatus(tx_hash=tx_hash, found=tx_hash in self._mempool())

    def _int(self, value: object, what: str) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ChainError(f"BTC node: {what} answered a malformed number")
