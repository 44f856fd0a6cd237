"""Locust users of bench/api.py: each holds one user's JWT and reads coins, balances and flows."""

from __future__ import annotations

import json
import os
from itertools import count
from pathlib import Path

from locust import between, task
from locust.contrib.fasthttp import FastHttpUser

TOKENS = json.loads(Path(os.environ["BENCH_TOKENS_FILE"]).read_text())
_next = count()
MODE = os.environ.get("BENCH_MODE", "api")


THINK = float(os.environ.get("BENCH_THINK_SECONDS", "10"))


class WalletReader(FastHttpUser):
    # A person on the wallet page: one read every few seconds (uniform around THINK).
    wait_time = between(THINK / 2, THINK * 1.5)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {TOKENS[next(_next) % len(TOKENS)]}"}

    @task(3)
    def balances(self) -> None:
        self._get("/api/v1/balances", "balances")

    @task(2)
    def flows(self) -> None:
        self._get("/api/v1/flows?page_size=20", "flows")

    @task(1)
    def coins(self) -> None:
        self._get("/api/v1/coins", "coins")

    def _get(self, path: str, name: str) -> None:
        if MODE == "baseline":
            # The same server, load generator and request rate without Django's database work.
            self.client.get("/static/admin/css/base.css", name="static")
            return
        self.client.get(path, headers=self.headers, name=name)
