"""
Benchmark: deposit addresses derived from the HD key and inserted into MariaDB per second, through
the pool-filling service, against coincurve's raw public-key derivation rate in the same run.

    python bench/addresses.py [--chain ETH] [--rounds 5] [--count 20000] [--batch 2000]

Creates its own database on the MariaDB of DATABASE_URL (default root@127.0.0.1:3306), migrates it,
drops it at the end. Prints one JSON object: addresses_per_s and raw_derive_per_s (medians of the
rounds), ratio (median of the rounds' ratios, each round's raw rate measured around its fill) and
the figures of each round.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chain", default="ETH", choices=["BTC", "ETH", "TRON"])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=2000)
    args = parser.parse_args()

    os.environ.setdefault("DATABASE_URL", "mysql://root:@127.0.0.1:3306/bench")
    os.environ["DATABASE_TEST_NAME"] = f"bench_addresses_{os.getpid()}"
    # A throwaway key-encryption key for this run's throwaway seed (BENCHMARK ONLY).
    os.environ["WALLET_KEK"] = "1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")

    import django

    django.setup()
    from coincurve import PublicKey
    from django.test.utils import setup_databases, teardown_databases

    from addresses import hd, services, signer
    from addresses.models import AddressType, KeySecret, WalletAddress

    old_config = setup_databases(verbosity=0, interactive=False, aliases={"default"})
    try:
        signer.hd_wallet_create(
            chain_id=args.chain,
            purpose=AddressType.USER_DEPOSIT,
            mnemonic=signer.mnemonic_generate(),
            label="benchmark only",
        )
        account_xpub = KeySecret.objects.get(chain_id=args.chain).account_xpub
        services.address_pool_fill(chain_id=args.chain, count=args.batch, batch_size=args.batch)  # warm up

        def raw_rate(scalars: list[bytes]) -> tuple[int, float]:
            started = time.perf_counter()
            for scalar in scalars:
                PublicKey.from_secret(scalar)
            return len(scalars), time.perf_counter() - started

        raw, ckd, derive_only, pool, ratios = [], [], [], [], []
        for _ in range(args.rounds):
            scalars = [secrets.token_bytes(32) for _ in range(args.count)]
            half = args.count // 2
            # The raw rate brackets the pool fill (half before, half after): the machine is
            # shared, and a load change between the two measurements would skew the ratio.
            n1, t1 = raw_rate(scalars[:half])

            before = WalletAddress.objects.count()
            started = time.perf_counter()
            added = services.address_pool_fill(chain_id=args.chain, count=args.count, batch_size=args.batch)
            pool_rate = added / (time.perf_counter() - started)
            assert WalletAddress.objects.count() - before == added == args.count

            n2, t2 = raw_rate(scalars[half:])
            raw_round = (n1 + n2) / (t1 + t2)
            raw.append(raw_round)
            pool.append(pool_rate)
            ratios.append(pool_rate / raw_round)

            parent = PublicKey(hd.ExtendedKey.from_xpub(account_xpub).child(0).public_key)
            started = time.perf_counter()
            for scalar in scalars:
                parent.add(scalar)
            ckd.append(args.count / (time.perf_counter() - started))

            started = time.perf_counter()
            for _ in hd.addresses_derive(args.chain, account_xpub, 10**6, args.count):
                pass
            derive_only.append(args.count / (time.perf_counter() - started))

        result = {
            "addresses_per_s": round(statistics.median(pool)),
            "raw_derive_per_s": round(statistics.median(raw)),
            "ratio": round(statistics.median(ratios), 3),
            "ratio_of_medians": round(statistics.median(pool) / statistics.median(raw), 3),
            "chain": args.chain,
            "rounds": args.rounds,
            "addresses_per_round": args.count,
            "batch_size": args.batch,
            "raw_ckd_tweak_add_per_s": round(statistics.median(ckd)),
            "derive_only_per_s": round(statistics.median(derive_only)),
            "rounds_addresses_per_s": [round(x) for x in pool],
            "rounds_raw_derive_per_s": [round(x) for x in raw],
            "rounds_ratio": [round(x, 3) for x in ratios],
            "raw_derive_is": "coincurve PublicKey.from_secret (scalar to public key), measured around each fill",
            "addresses_are": "derived from the seed's account xpub and inserted into MariaDB by address_pool_fill",
            "database": "MariaDB" if "mysql" in os.environ["DATABASE_URL"] else os.environ["DATABASE_URL"],
        }
    finally:
        teardown_databases(old_config, verbosity=0)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
