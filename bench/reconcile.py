"""
Assurance benchmarks, one function per part, their figures merged into one JSON object.

    python bench/reconcile.py [--rounds 3] [--users 1000000] [--skip-store] [--flows 1000000] [--only ledger]

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

Reconciliation's ledger check (`ledger_figures`), on MariaDB (bench_reconcile):
- `--flows` user flows of one coin (default 1,000,000) over `--flow-users` users (default 20,000),
  each user's flows chaining to their balance row, written once and kept between runs.
- flows_checked_per_s: flows / the time of assets.selectors.ledger_check over the coin (the full
  check of every balance row against the sums of its flows, what a daily run does), median of
  the rounds.
- raw_sum_per_s: flows / the time of the bare `SELECT user_id, SUM(...) ... GROUP BY user_id` over
  the same rows, fetched, measured in the same run. reconcile_ratio = flows_checked_per_s /
  raw_sum_per_s (target >= 0.5).
- incremental_check_s: the check of the users of the last 1,000 flows (what a scheduled run
  between full ones reads).

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
from datetime import UTC, datetime
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


BENCH_COIN = "BTC"
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)  # no flow is created after it: only ids select


def _ledger_fill(*, flows: int, users: int) -> None:
    """
    Write `flows` chained flows of BENCH_COIN over `users` users and their balance rows, unless
    already there. Generated by the server (MariaDB's sequence tables and a window sum), so that
    the fill takes seconds, not the hour a million client-side inserts take on a loaded machine.
    """
    django_ready()
    from django.db import connection

    from assets.models import Balance, Flow

    if Flow.objects.filter(coin_id=BENCH_COIN).count() == flows and Balance.objects.count() == users:
        return
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM asset_flow")
        cursor.execute("DELETE FROM asset_balance")
        cursor.execute("DELETE FROM auth_user WHERE username LIKE 'bench-%%'")
        cursor.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, "
            f"is_active, date_joined) SELECT '!', 0, CONCAT('bench-', seq), '', '', '', 0, 1, NOW() "
            f"FROM seq_1_to_{users}"
        )
        cursor.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM auth_user WHERE username LIKE 'bench-%%'")
        first, last, count = cursor.fetchone()
        if last - first + 1 != count:
            raise SystemExit("the bench users' ids are not consecutive: empty the bench_reconcile database")
        # Flow n belongs to user first + n mod users; its amount is some satoshis; each user's flows
        # chain by the running sum in flow order.
        cursor.execute(
            "INSERT INTO asset_flow (flow_no, user_id, coin_id, business_type, biz_ref, amount, balance_before, "
            "balance_after, frozen_amount, frozen_before, frozen_after, debt_amount, debt_before, debt_after, "
            "ref_tx_hash, memo, create_time) "
            "SELECT CONCAT('BF', LPAD(seq, 30, '0')), user_id, %s, 1, CONCAT('bench-', seq), amount, "
            "SUM(amount) OVER w - amount, SUM(amount) OVER w, 0, 0, 0, 0, 0, 0, '', '', NOW() "
            f"FROM (SELECT seq, {first} + seq MOD {users} AS user_id, "
            "CAST((seq MOD 99991 + 1) * 1234 AS DECIMAL(38, 8)) / 100000000 AS amount "
            f"FROM seq_1_to_{flows}) AS generated "
            "WINDOW w AS (PARTITION BY user_id ORDER BY seq ROWS UNBOUNDED PRECEDING)",
            [BENCH_COIN],
        )
        cursor.execute(
            "INSERT INTO asset_balance (user_id, coin_id, available, frozen, debt, create_time, update_time) "
            "SELECT user_id, coin_id, SUM(amount), 0, 0, NOW(), NOW() FROM asset_flow GROUP BY user_id, coin_id"
        )


def ledger_figures(args: argparse.Namespace) -> dict[str, object]:
    """The ledger check's rate over MariaDB against the bare SUM ... GROUP BY over the same flows."""
    _ledger_fill(flows=args.flows, users=args.flow_users)
    from django.db import connection

    from assets import selectors as assets_selectors

    raw_sql = (
        "SELECT user_id, SUM(amount), SUM(frozen_amount), SUM(debt_amount) FROM asset_flow "
        "WHERE coin_id = %s GROUP BY user_id"
    )
    checks, raws = [], []
    for _ in range(args.rounds):
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(raw_sql, [BENCH_COIN])
            groups = len(cursor.fetchall())
            raws.append(time.perf_counter() - started)
        started = time.perf_counter()
        flows, mismatches = assets_selectors.ledger_check(coin_id=BENCH_COIN)
        checks.append(time.perf_counter() - started)
        if flows != args.flows or mismatches or groups != args.flow_users:
            raise SystemExit(f"the bench ledger is not what was written: {flows} flows, {len(mismatches)} mismatches")
    recent = set(
        assets_selectors.flow_users_since(
            coin_id=BENCH_COIN, after_id=assets_selectors.flow_id_max() - 1000, since=FAR_FUTURE
        )
    )
    started = time.perf_counter()
    assets_selectors.ledger_check(coin_id=BENCH_COIN, user_ids=recent)
    incremental = time.perf_counter() - started
    check, raw = median(checks), median(raws)
    return {
        "ledger_flows": args.flows,
        "ledger_users": args.flow_users,
        "flows_checked_per_s": round(args.flows / check),
        "raw_sum_per_s": round(args.flows / raw),
        "reconcile_ratio": round(raw / check, 3),
        "ledger_check_rounds_s": [round(c, 3) for c in checks],
        "raw_sum_rounds_s": [round(r, 3) for r in raws],
        "incremental_users": len(recent),
        "incremental_check_s": round(incremental, 3),
    }


PARTS: list[Callable[[argparse.Namespace], dict[str, object]]] = [por_figures, ledger_figures]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--skip-store", action="store_true", help="do not time the leaves' insert into MariaDB")
    parser.add_argument("--flows", type=int, default=1_000_000, help="user flows the ledger check reads")
    parser.add_argument("--flow-users", type=int, default=20_000, help="users those flows belong to")
    parser.add_argument("--only", choices=["por", "ledger"], help="run one part")
    args = parser.parse_args()
    figures: dict[str, object] = {}
    for part in PARTS:
        if args.only and not part.__name__.startswith(args.only):
            continue
        figures.update(part(args))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
