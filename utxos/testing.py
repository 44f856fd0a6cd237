"""
Test helper: compare the UTXO set with a node's own block data (for any app's tests on the dev node).

Reads the blocks by raw RPC (bcoin's `getblock HASH true true`), not through the adapter the
scanner uses, so a parsing mistake there cannot hide here.
"""

from __future__ import annotations

from typing import Any

from addresses.models import WalletAddress
from chains.btc import BtcAdapter, btc_to_sats
from utxos.models import BtcUtxo


def utxo_set_differences(node: Any, adapter: BtcAdapter, start: int) -> list[str]:
    """
    Return how the live set differs from our outputs in the node's blocks start..tip (empty: equal).

    Equal means: the same outpoints, each with the node's value, script, owner and block; spent by
    the transaction and block that spend it on the node, or unspent and known to `gettxout`. `node`
    is a chains.devnodes.BtcDevNode (anything with `rpc(method, *params)`).
    """
    owners = {adapter.match_key(row.address): row.id for row in WalletAddress.objects.filter(chain_id="BTC")}
    outputs: dict[tuple[str, int], tuple[object, ...]] = {}
    spends: dict[tuple[str, int], tuple[object, ...]] = {}
    for height in range(start, node.rpc("getblockcount") + 1):
        block_hash = node.rpc("getblockhash", height)
        for tx in node.rpc("getblock", block_hash, True, True)["tx"]:
            if "coinbase" in tx["vin"][0]:
                continue
            for vin in tx["vin"]:
                spends[(vin["txid"], vin["vout"])] = (tx["txid"], height, block_hash)
            for out in tx["vout"]:
                script = out["scriptPubKey"]["hex"]
                if script in owners:
                    facts = (btc_to_sats(out["value"]), script, owners[script], height, block_hash)
                    outputs[(tx["txid"], out["n"])] = facts
    rows = {(r.txid, r.vout): r for r in BtcUtxo.objects.filter(orphaned=False, block_height__gte=start)}
    found = [f"{txid}:{vout} is on the chain, not in the set" for txid, vout in sorted(set(outputs) - set(rows))]
    found += [f"{txid}:{vout} is in the set, not on the chain" for txid, vout in sorted(set(rows) - set(outputs))]
    for outpoint in sorted(set(rows) & set(outputs)):
        row, name = rows[outpoint], "{}:{}".format(*outpoint)
        stored = (row.value_sats, row.script_hex, row.address_id, row.block_height, row.block_hash)
        if stored != outputs[outpoint]:
            found.append(f"{name} is stored as {stored}, the node says {outputs[outpoint]}")
        spend = (row.spent_txid, row.spent_height, row.spent_hash)
        if spend != spends.get(outpoint, (None, None, None)):
            found.append(f"{name} is stored spent by {spend}, the node says {spends.get(outpoint)}")
        unspent = node.rpc("gettxout", row.txid, row.vout)
        if (unspent is None) != (row.spent_txid is not None):
            found.append(f"{name}: gettxout says {'spent' if unspent is None else 'unspent'}")
        elif unspent is not None and (
            btc_to_sats(unspent["value"]) != row.value_sats or unspent["scriptPubKey"]["hex"] != row.script_hex
        ):
            found.append(f"{name}: gettxout answers another value or script")
    return found
