from __future__ import annotations

import json
import logging

import pytest

from wallet_project.logging import ContextFilter, RedactingFilter, redact

# Throwaway test values only: none of them guards anything.
TEST_PRIVATE_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
TEST_MNEMONIC = "abandon ability able about above absent absorb abstract absurd abuse access accident"
TEST_XPRV = (
    "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi"
)
TEST_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjoxfQ.c2lnbmF0dXJlLW9ubHktZm9yLXRlc3Rz"


@pytest.mark.parametrize(
    "line",
    [
        f"signing with {TEST_PRIVATE_KEY}",
        f"key 0x{TEST_PRIVATE_KEY} loaded",
        f"seed words: {TEST_MNEMONIC}",
        f"restored {TEST_XPRV}",
        f"Authorization: Bearer {TEST_JWT}",
        "login password=hunter2-test-only&user=alice",
        '{"private_key": "abc-test-only"}',
        f"token {TEST_JWT}",
    ],
)
def test_redact_masks_secret_shaped_text(line):
    masked = redact(line)

    for secret in (TEST_PRIVATE_KEY, TEST_MNEMONIC, TEST_XPRV, TEST_JWT, "hunter2-test-only", "abc-test-only"):
        assert secret not in masked
    assert "[REDACTED]" in masked


def test_redact_keeps_ordinary_lines():
    line = "deposit R20261128000000123 credited 0.5 BTC to user 42 at height 812345"

    assert redact(line) == line


def test_log_records_are_redacted_with_arguments_and_tracebacks(caplog):
    logger = logging.getLogger("wallet.test")
    handler = caplog.handler
    handler.addFilter(RedactingFilter())

    try:
        raise ValueError(f"bad key {TEST_PRIVATE_KEY}")
    except ValueError:
        logger.exception("failed with %s", TEST_MNEMONIC)

    text = caplog.text
    assert TEST_PRIVATE_KEY not in text and TEST_MNEMONIC not in text
    assert text.count("[REDACTED]") >= 2


def test_responses_carry_a_request_id_that_log_lines_share(client, db):
    response = client.get("/api/v1/coins", HTTP_X_REQUEST_ID="req-123")

    assert response["X-Request-ID"] == "req-123"
    assert client.get("/api/v1/coins", HTTP_X_REQUEST_ID="bad id with spaces")["X-Request-ID"] != "bad id with spaces"


def test_json_formatter_emits_one_object_per_line_with_context():
    from pythonjsonlogger.json import JsonFormatter

    record = logging.LogRecord("wallet", logging.INFO, __file__, 1, "credited %s", ("R1",), None)
    ContextFilter().filter(record)
    RedactingFilter().filter(record)
    formatter = JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(task_id)s")

    payload = json.loads(formatter.format(record))

    assert payload["message"] == "credited R1"
    assert {"request_id", "task_id", "levelname"} <= set(payload)
