"""
Fixtures of the monitoring tests: a real HTTP receiver for webhooks on loopback, alert channels
configured to reach it, and a throwaway key-encryption key.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# TEST-ONLY secrets: a webhook secret, a key-encryption key and a backup key that guard nothing.
WEBHOOK_SECRET = "test-only-webhook-secret-7f3a"
TEST_KEK = bytes(range(1, 33))
TEST_BACKUP_KEY = bytes(range(200, 232))
TEST_MNEMONIC = "legal winner thank year wave sausage worth useful legal winner thank yellow"

README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Receiver:
    """An HTTP server that records every POST and answers with the next scripted status code."""

    url: str = ""
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_answer(self) -> int:
        with self.lock:
            return self.answers.pop(0) if self.answers else 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.received.append(Received(headers=dict(self.headers.items()), body=body))
            self.send_response(state.next_answer())
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/wallet"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def channels(settings, receiver: Receiver) -> Receiver:
    """Webhook for warning and critical alerts, email for critical ones (Django's test mail outbox)."""
    settings.ALERT_WEBHOOK_URL = receiver.url
    settings.ALERT_WEBHOOK_SECRET = WEBHOOK_SECRET
    settings.ALERT_WEBHOOK_SEVERITIES = ["warning", "critical"]
    settings.ALERT_EMAIL_TO = ["oncall@example.com"]
    settings.ALERT_EMAIL_SEVERITIES = ["critical"]
    settings.ALERT_DELIVERY_BACKOFF_SECONDS = 30
    settings.ALERT_DELIVERY_BACKOFF_MAX_SECONDS = 3600
    settings.ALERT_DELIVERY_MAX_ATTEMPTS = 12
    return receiver


@pytest.fixture
def test_kek(monkeypatch, settings, tmp_path) -> bytes:
    monkeypatch.setenv("WALLET_KEK", "1:" + base64.b64encode(TEST_KEK).decode())
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_KEK_VERSION = 0
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    return TEST_KEK


@pytest.fixture
def backup_key(monkeypatch, settings, tmp_path) -> bytes:
    monkeypatch.setenv("BACKUP_KEY", base64.b64encode(TEST_BACKUP_KEY).decode())
    settings.BACKUP_KEY_FILE = ""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.BACKUP_KEEP = 14
    return TEST_BACKUP_KEY


def readme_recipe() -> dict:
    """Run the webhook verification snippet of the README; return its namespace (verify_signature)."""
    text = README.read_text()
    match = re.search(r"<!-- webhook-recipe -->\s*```python\n(.*?)```", text, re.S)
    assert match, "the README lost its webhook verification recipe"
    namespace: dict = {}
    exec(compile(match.group(1), "README webhook recipe", "exec"), namespace)  # noqa: S102 - our own README
    return namespace
