"""
Assurance benchmarks, one function per part, their figures merged into one JSON object.

    python bench/reconcile.py [--rounds 3] [--users 1000000] [--skip-store]

Proof of reserves (`por_figures`):
- por_build_s: the Merkle-sum tree of `--users` leaves built by reserves.merkle.tree_build (each
  leaf's salt by HMAC, the leaf hash, every node's hash and sum, the stored upper levels), the
  balances generated in memory (random base units, random user ids; the read from MariaDB is
  not in it); median of the rounds.
- raw_sha256_s: the same number of SHA-256 calls over messages of the same sizes (one leaf-sized
  and one node-sized message per user, 2 * users in all) in a bare loop, measured in the same
  run: the floor of any tree build in Python. por_build_ratio = raw_sha256_s / por_build_s.
- por_store_s (unless --skip-store): the leaves inserted into MariaDB as the snapshot command
  stores them (reserves.services.leaves_store, one transaction), one round, in a database of its own
  (bench_reconcile on the server of BENCH_MYSQL_URL, default root@127.0.0.1:3306).
Target: por_build_s <= 30 for 1,000,000 users.

Other parts add a function to PARTS; each returns a dict of figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path

from _django import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@cache
def django_ready() -> None:
    """Set Django up on the benchmark's own MariaDB database, once for every part that needs it."""
    from _django import setup

    setup("bench_reconcile")


def _balances(users: int) -> list[tuple[int, int]]:
    rng = random.Random(users)
    ids = rng.sample(range(1, 50 * users), users)
    # Up to 10**12 base units, a tenth of users at zero: what an exchange's ledger looks like.
    return [(uid, 0 if rng.random() < 0.1 else rng.randrange(1, 10**12)) for uid in ids]


def _raw_sha256(users: int) -> float:
    leaf = bytes(57)  # tag + salt + user id + balance
    node = bytes(97)  # tag + two (hash + sum)
    sha256 = hashlib.sha256
    started = time.perf_counter()
    for _ in range(users):
        sha256(leaf).digest()
        sha256(node).digest()
    return time.perf_counter() - started


def _store(leaves: list[tuple[int, int]], secret: bytes, tree: object) -> float:
    django_ready()
    from django.db import connection, transaction
    from django.utils import timezone

    from reserves import services as reserves_services
    from reserves.models import ReserveSnapshot, ReserveTree

    def clear() -> None:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM reserve_leaf")
        ReserveTree.objects.all().delete()
        ReserveSnapshot.objects.all().delete()

    clear()
    snapshot = ReserveSnapshot.objects.create(taken_at=timezone.now(), snapshot_root="", statement="bench")
    row = ReserveTree.objects.create(
        snapshot=snapshot,
        coin_id="BTC",
        root=tree.root.hex(),
        total_base_units=tree.total,
        leaf_count=tree.leaf_count,
        depth=tree.depth,
        salt_secret=secret,
        upper=tree.upper,
    )
    started = time.perf_counter()
    with transaction.atomic(durable=True):
        reserves_services.leaves_store(tree=row, leaves=leaves)
    elapsed = time.perf_counter() - started
    clear()
    return elapsed


def por_figures(args: argparse.Namespace) -> dict[str, object]:
    """The proof-of-reserves figures: tree build time against the raw hashing floor."""
    from reserves import merkle

    leaves = _balances(args.users)
    builds, raws = [], []
    tree, secret = None, b""
    for _ in range(args.rounds):
        raws.append(_raw_sha256(args.users))
        secret = merkle.salt_new_secret()
        started = time.perf_counter()
        tree = merkle.tree_build(secret=secret, leaves=leaves)
        builds.append(time.perf_counter() - started)
    build, raw = median(builds), median(raws)
    figures: dict[str, object] = {
        "por_users": args.users,
        "por_balances_source": "generated in memory",
        "por_build_s": round(build, 2),
        "raw_sha256_s": round(raw, 2),
        "por_build_ratio": round(raw / build, 3),
        "por_build_rounds_s": [round(b, 2) for b in builds],
        "raw_sha256_per_s": round(2 * args.users / raw),
    }
    if not args.skip_store:
        figures["por_store_s"] = round(_store(leaves, secret, tree), 2)
    return figures


PARTS: list[Callable[[argparse.Namespace], dict[str, object]]] = [por_figures]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--skip-store", action="store_true", help="do not time the leaves' insert into MariaDB")
    args = parser.parse_args()
    figures: dict[str, object] = {}
    for part in PARTS:
        figures.update(part(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
