"""
The read API under 1,000 concurrent authenticated users, against the production server setup.

    python bench/api.py [--users 1000] [--seconds 30]

Starts gunicorn on MariaDB (database bench_api, filled with 1,000 users, their balances and flows)
and Redis, then Locust headless: each simulated user, holding its own JWT, reads its balances, a
page of its flows or the coin list, one read every few seconds (--think-seconds, default 10, drawn
uniformly from half to one and a half times it). The baseline in the same run is the same load on
a static file (no database work), which shows what this machine's server and load generator can do
at all. Prints one JSON object: rps,
p50_ms, p99_ms, errors, and the baseline's figures.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

from _django import ROOT, setup

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fill(users: int) -> list[str]:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from rest_framework_simplejwt.tokens import AccessToken

    from assets import services as assets_services
    from assets.models import BusinessType, Flow
    from coins.models import CoinConfig

    User = get_user_model()
    User.objects.bulk_create([User(username=f"bench-api-{i}") for i in range(users)], ignore_conflicts=True)
    people = list(User.objects.filter(username__startswith="bench-api-").order_by("id")[:users])
    if not Flow.objects.filter(user=people[-1]).exists():
        for coin in CoinConfig.objects.filter(coin_id__in=["BTC", "ETH", "USDT-ERC20"]):
            for n in range(10):
                credits = [
                    assets_services.Credit(
                        user_id=p.id, amount=Decimal("1.5"), biz_ref=f"api-{coin.coin_id}-{n}-{p.id}"
                    )
                    for p in people
                ]
                with transaction.atomic(durable=True):
                    assets_services.balance_credit_batch(
                        coin=coin, business_type=BusinessType.RECHARGE, credits=credits
                    )
    return [str(AccessToken.for_user(p)) for p in people]


def wait_ready(url: str, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"server at {url} did not become ready")


def run_locust(*, host: str, users: int, seconds: int, mode: str, tokens_file: str, workdir: str) -> dict:
    prefix = os.path.join(workdir, mode)
    env = {**os.environ, "BENCH_TOKENS_FILE": tokens_file, "BENCH_MODE": mode}
    # Users arrive at 50/s (Locust warns that faster spawning distorts the figures); statistics
    # are reset once all have arrived, and `seconds` of steady load are measured after that.
    spawn_rate = min(max(users // 20, 1), 50)
    ramp_seconds = -(-users // spawn_rate)
    subprocess.run(
        [
            str(VENV_BIN / "locust"),
            "-f",
            str(ROOT / "bench" / "api_locustfile.py"),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(spawn_rate),
            "-t",
            f"{seconds + ramp_seconds}s",
            "--host",
            host,
            "--reset-stats",
            "--csv",
            prefix,
            "--only-summary",
            "--loglevel",
            "ERROR",
            "--stop-timeout",
            "5",
        ],
        env=env,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=seconds + ramp_seconds + 120,
    )
    with open(f"{prefix}_stats.csv") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    total = rows["Aggregated"]
    return {
        "rps": round(float(total["Requests/s"]), 1),
        "p50_ms": float(total["50%"]),
        "p99_ms": float(total["99%"]),
        "errors": int(total["Failure Count"]),
        "requests": int(total["Request Count"]),
        "per_endpoint_p99_ms": {name: float(row["99%"]) for name, row in rows.items() if name != "Aggregated"},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--worker-class", default="gthread")
    parser.add_argument("--think-seconds", type=float, default=10.0, help="mean pause between a user's reads")
    args = parser.parse_args()
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    os.environ["JWT_ACCESS_MINUTES"] = "240"
    os.environ["BENCH_THINK_SECONDS"] = str(args.think_seconds)
    setup("bench_api")
    tokens = fill(args.users)

    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server_env = {**os.environ, "DJANGO_DEBUG": "false", "LOG_LEVEL": "WARNING"}
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env=server_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    server = subprocess.Popen(
        [
            str(VENV_BIN / "gunicorn"),
            "wallet_project.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(args.workers),
            "--threads",
            str(args.threads),
            "--worker-class",
            args.worker_class,
            "--backlog",
            "4096",
            # Clients keep their connection between reads, as behind a load balancer; gunicorn's
            # 2-second default would make every read of a thinking user open a new connection.
            "--keep-alive",
            "75",
        ],
        cwd=ROOT,
        env=server_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"{host}/api/v1/wallet/health")
        with tempfile.TemporaryDirectory() as workdir:
            tokens_file = os.path.join(workdir, "tokens.json")
            Path(tokens_file).write_text(json.dumps(tokens))
            baseline = run_locust(
                host=host,
                users=args.users,
                seconds=args.seconds,
                mode="baseline",
                tokens_file=tokens_file,
                workdir=workdir,
            )
            api = run_locust(
                host=host, users=args.users, seconds=args.seconds, mode="api", tokens_file=tokens_file, workdir=workdir
            )
    finally:
        server.terminate()
        server.wait(timeout=30)
    result = {
        **{k: api[k] for k in ("rps", "p50_ms", "p99_ms", "errors")},
        "requests": api["requests"],
        "per_endpoint_p99_ms": api["per_endpoint_p99_ms"],
        "users": args.users,
        "think_seconds": args.think_seconds,
        "server": f"gunicorn {args.worker_class} workers={args.workers} threads={args.threads}",
        "seconds": args.seconds,
        "baseline_static_rps": baseline["rps"],
        "baseline_static_p99_ms": baseline["p99_ms"],
        "targets": {"p99_ms": 200, "errors": 0},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
