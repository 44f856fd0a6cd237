"""
Deposit scanner throughput against a local EVM dev node (ganache, started and stopped here).

    python bench/scan.py [--rounds 3] [--blocks 30] [--txs-per-block 100]

Prints one JSON object (medians of the rounds):
- scan_tx_per_s: transactions scanned and matched per second by deposits_scan_batch (the EVM adapter's
  range read, matching against 100k watched addresses, deposits recorded in MariaDB: one transaction
  per batch of blocks), from ganache;
- raw_rpc_tx_per_s: THE BASELINE: transactions per second of bare eth_getBlockByNumber(full
  transactions) calls, one HTTP request per block, for the same blocks on the same node, measured in
  the same process in every round just before the scan; scan_ratio = scan / raw (target >= 0.8);
- raw_rpc_batched_tx_per_s: the same calls sent as one JSON-RPC batch (how the adapter reads a range),
  and scan_ratio_batched = scan / that: the stricter comparison;
- adapter_read_tx_per_s: the adapter's range read alone (no database), to show what the node costs;
- match_1m_tx_per_s: CPU-only matching of pre-fetched blocks against 1M watched keys (target >= 50,000);
- credits_per_s: deposits credited per second by deposits_confirm end to end (canonical check,
  ledger posting, status, outbox event; MariaDB).

The 100k (and 1M) watched keys: the addresses that receive deposits are real wallet_address rows of
real users; the rest are random keys put in the scanner's in-process watch list (a dict, so its
size, not its origin, is what matching pays for), which saves creating 100k users per run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
from decimal import Decimal

from _django import median, setup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=30)
    parser.add_argument("--txs-per-block", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("SCAN_BATCH_BLOCKS", "1000")
    setup("bench_scan")

    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from addresses.models import AddressType, WalletAddress
    from assets.models import Balance, Flow, OutboxMessage
    from chains.devnodes import evm_start
    from chains.evm import EvmAdapter
    from chains.rpc import HttpNode
    from coins.models import CoinConfig
    from recharges import matching, watchlist
    from recharges import services as recharges_services
    from recharges.models import RecentBlock, RechargeRecord, RechargeStatus, ScanCursor

    node = evm_start(accounts=10)
    try:
        adapter = EvmAdapter(url=node.url, connect_timeout=2, read_timeout=60)
        raw_node = HttpNode(node.url, name="ganache", connect_timeout=2, read_timeout=60)

        # 50 real deposit addresses (users) receive 1 transfer in 20 (an exchange's addresses are a small
        # share of a block's traffic); 950 unwatched addresses get the rest.
        User = get_user_model()
        users = [User.objects.get_or_create(username=f"bench-scan-{i}")[0] for i in range(50)]
        WalletAddress.objects.filter(chain_id="ETH", address_type=AddressType.USER_DEPOSIT).delete()
        watched = ["0x" + secrets.token_hex(20) for _ in users]
        WalletAddress.objects.bulk_create(
            WalletAddress(
                coin_id="ETH",
                coin_name="ETH",
                chain_id="ETH",
                address_type=AddressType.USER_DEPOSIT,
                address=address,
                user=user,
                assign_time=timezone.now(),
            )
            for address, user in zip(watched, users, strict=True)
        )
        others = ["0x" + secrets.token_hex(20) for _ in range(950)]
        recipients = [others[i % 950] if i % 20 else watched[i // 20] for i in range(1000)]
        heights = node.fill_blocks(blocks=args.blocks, txs_per_block=args.txs_per_block, recipients=recipients)
        node.mine(1)
        first, last = heights[0], heights[-1]
        # fill_blocks sends 10**12 wei (0.000001 ETH) per transfer: below the seeded minimum.
        CoinConfig.objects.filter(coin_id="ETH").update(required_confirmations=1, min_recharge_amount=Decimal("1e-18"))
        total_txs = sum(len(raw_node.call("eth_getBlockByNumber", [hex(h), False])["transactions"]) for h in heights)

        def fill_watch(size: int) -> dict[str, tuple[int, str]]:
            watchlist.watchlist_reset()
            keys, _version = watchlist.watchlist_get(chain_id="ETH", adapter=adapter)  # the real rows
            while len(keys) < size:
                keys["0x" + secrets.token_hex(20)] = (users[0].id, "synthetic")
            return keys

        def reset_scan() -> None:
            OutboxMessage.objects.all().delete()
            Flow.objects.all().delete()
            Balance.objects.all().delete()
            RechargeRecord.objects.all().delete()
            ScanCursor.objects.all().delete()
            RecentBlock.objects.all().delete()
            ScanCursor.objects.create(chain_id="ETH", height=first - 1, tip_height=last)

        def scan_all() -> None:
            now = timezone.now()
            while True:
                result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=adapter)
                if result.error:
                    raise SystemExit(f"scan failed: {result.error}")
                if result.height is not None and result.height >= last:
                    return

        raw_rates, batched_rates, read_rates, scan_rates, credit_rates, match_rates = [], [], [], [], [], []
        scan_watch = fill_watch(100_000)
        for _ in range(args.rounds):
            started = time.perf_counter()
            for h in heights:
                raw_node.call("eth_getBlockByNumber", [hex(h), True])
            raw_rates.append(total_txs / (time.perf_counter() - started))

            started = time.perf_counter()
            raw_node.batch([("eth_getBlockByNumber", [hex(h), True]) for h in heights])
            batched_rates.append(total_txs / (time.perf_counter() - started))

            started = time.perf_counter()
            adapter.blocks(first, last, watched=scan_watch)
            read_rates.append(total_txs / (time.perf_counter() - started))

            reset_scan()
            started = time.perf_counter()
            scan_all()
            scan_rates.append(total_txs / (time.perf_counter() - started))

            pending = RechargeRecord.objects.filter(status=RechargeStatus.PENDING).count()
            started = time.perf_counter()
            result = recharges_services.deposits_confirm(chain_id="ETH", now=timezone.now(), adapter=adapter)
            elapsed = time.perf_counter() - started
            if result.credited != pending or pending == 0:
                raise SystemExit(f"credited {result.credited} of {pending} deposits")
            credit_rates.append(result.credited / elapsed)

        # CPU only: every transfer of the pre-fetched blocks against 1M watched keys.
        blocks = [adapter.block(h) for h in heights]
        watch = fill_watch(1_000_000)
        rules = matching.CoinRules(chain_id="ETH", native_coin_id="ETH", tokens={}, coin_ids=("ETH",))
        for _ in range(args.rounds):
            done, started = 0, time.perf_counter()
            while time.perf_counter() - started < 1.0:
                for block in blocks:
                    matching.transfers_match(
                        transfers=block.transfers, watch=watch, rules=rules, contract_key=adapter.match_key
                    )
                    done += len(block.transfers)
            match_rates.append(done / (time.perf_counter() - started))
    finally:
        node.stop()

    scan, raw, batched = median(scan_rates), median(raw_rates), median(batched_rates)
    print(
        json.dumps(
            {
                "scan_tx_per_s": round(scan, 1),
                "raw_rpc_tx_per_s": round(raw, 1),
                "scan_ratio": round(scan / raw, 3),
                "raw_rpc_batched_tx_per_s": round(batched, 1),
                "scan_ratio_batched": round(scan / batched, 3),
                "adapter_read_tx_per_s": round(median(read_rates), 1),
                "match_1m_tx_per_s": round(median(match_rates), 1),
                "credits_per_s": round(median(credit_rates), 1),
                "blocks": len(heights),
                "txs": total_txs,
                "deposits_per_round": pending,
                "watched_scan": 100_000,
                "watched_match": 1_000_000,
                "rounds": args.rounds,
                "baseline": "raw_rpc_tx_per_s: eth_getBlockByNumber(full txs), one request per block, same blocks, "
                "same ganache, same process, each round just before the scan; medians of the rounds",
            }
        )
    )


if __name__ == "__main__":
    sys.exit(main())
