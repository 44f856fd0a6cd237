"""Locust users of bench/api.py: each holds one user's JWT and reads coins, balances and flows."""

from __future__ import annotations

import json
import os
from itertools import count
from pathlib import Path

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

TOKENS = json.loads(Path(os.environ["BENCH_TOKENS_FILE"]).read_text())
_next = count()
MODE = os.environ.get("BENCH_MODE", "api")


class WalletReader(FastHttpUser):
    wait_time = constant(float(os.environ.get("BENCH_THINK_SECONDS", "1")))

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {TOKENS[next(_next) % len(TOKENS)]}"}

    @task
    def read(self) -> None:
        if MODE == "baseline":
            # The same server and load generator without Django's database work: a static file.
            self.client.get("/static/admin/css/base.css", name="static")
            return
        self.client.get("/api/v1/coins", name="coins")
        self.client.get("/api/v1/balances", headers=self.headers, name="balances")
        self.client.get("/api/v1/flows?page_size=20", headers=self.headers, name="flows")
