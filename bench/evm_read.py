"""
EVM adapter read throughput against a local ganache (started and stopped here), no database.

    python bench/evm_read.py [--rounds 5] [--blocks 15] [--txs-per-block 100]

Blocks: half ETH transfers, half test-USDT transfers, 1 in 20 to one of 50 watched recipients among
100k watched keys. Prints one JSON object (medians of the rounds):
- raw_rpc_tx_per_s: transactions per second of bare eth_getBlockByNumber(full) calls, block by block;
- range_tx_per_s / range_ratio: EvmAdapter.blocks(first, last, watched) over the same blocks;
- block_tx_per_s / block_ratio: EvmAdapter.block(height, watched) block by block;
- balances_per_s / balances_ratio: ETH and token balances of 1,000 addresses at one block read by
  EvmAdapter.balances (proof of reserves: batched requests) vs raw_balance_per_s, the same readings
  by EvmAdapter.balance one request each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=15)
    parser.add_argument("--txs-per-block", type=int, default=100)
    args = parser.parse_args()

    from eth_account import Account

    from chains.devnodes import evm_start
    from chains.evm import EvmAdapter
    from chains.rpc import HttpNode

    node = evm_start()
    try:
        usdt = node.token_deploy()
        node.transact(node.contract(usdt).functions.mint(node.accounts[0].address, 10**15))
        recipients = [Account.create().address for _ in range(1000)]  # throwaway TEST-ONLY keys
        eth = node.fill_blocks(blocks=args.blocks, txs_per_block=args.txs_per_block, recipients=recipients)
        token = node.fill_blocks(
            blocks=args.blocks, txs_per_block=args.txs_per_block, recipients=recipients, token=usdt
        )
        heights = [*eth, *token]
        watched = {a.lower() for a in recipients[::20]} | {Account.create().address.lower() for _ in range(100_000)}
        adapter = EvmAdapter(url=node.url, read_timeout=60)
        raw = HttpNode(node.url, name="ganache", connect_timeout=2, read_timeout=60)
        adapter.blocks(heights[0], heights[-1], watched=watched)  # warm the code-less cache

        raw_rates, range_rates, block_rates, matched = [], [], [], 0
        one_rates, batched_rates = [], []
        wanted = [(address, contract) for address in recipients for contract in (None, usdt)]
        height = adapter.tip_height()
        for _ in range(args.rounds):
            started = time.perf_counter()
            txs = sum(len(raw.call("eth_getBlockByNumber", [hex(h), True])["transactions"]) for h in heights)
            raw_rates.append(txs / (time.perf_counter() - started))
            started = time.perf_counter()
            blocks = adapter.blocks(heights[0], heights[-1], watched=watched)
            range_rates.append(txs / (time.perf_counter() - started))
            started = time.perf_counter()
            for h in heights:
                adapter.block(h, watched=watched)
            block_rates.append(txs / (time.perf_counter() - started))
            matched = sum(len(b.transfers) for b in blocks)
            started = time.perf_counter()
            one = [adapter.balance(address, contract, height=height) for address, contract in wanted]
            one_rates.append(len(wanted) / (time.perf_counter() - started))
            started = time.perf_counter()
            batched = adapter.balances(wanted, height=height)
            batched_rates.append(len(wanted) / (time.perf_counter() - started))
            assert batched == one, "batched balances differ from one-by-one balances"
    finally:
        node.stop()
    raw_rate, range_rate, block_rate = (statistics.median(r) for r in (raw_rates, range_rates, block_rates))
    one_rate, batched_rate = statistics.median(one_rates), statistics.median(batched_rates)
    print(
        json.dumps(
            {
                "raw_rpc_tx_per_s": round(raw_rate, 1),
                "range_tx_per_s": round(range_rate, 1),
                "range_ratio": round(range_rate / raw_rate, 2),
                "block_tx_per_s": round(block_rate, 1),
                "block_ratio": round(block_rate / raw_rate, 2),
                "raw_balance_per_s": round(one_rate, 1),
                "balances_per_s": round(batched_rate, 1),
                "balances_ratio": round(batched_rate / one_rate, 2),
                "txs": txs,
                "matched": matched,
                "watched": len(watched),
                "rounds": args.rounds,
            }
        )
    )


if __name__ == "__main__":
    main()
