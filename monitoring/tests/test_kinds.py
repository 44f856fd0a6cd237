"""Every alert kind the code raises is registered with a severity and what to do."""

from __future__ import annotations

import re
from pathlib import Path

from monitoring import kinds
from monitoring.models import Severity

ROOT = Path(__file__).resolve().parents[2]
APPS = (
    "coins", "chains", "addresses", "recharges", "withdrawals", "assets", "utxos", "controls", "reserves", "monitoring",
    "treasury",
    "wallet_project",
)  # fmt: skip
KIND_ARGUMENT = re.compile(r"""\b(?:alert_)?kind=["']([A-Z][A-Z0-9_]+)["']""")


def kinds_in_code() -> set[str]:
    found = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "tests" in path.parts or "migrations" in path.parts:
                continue
            found |= set(KIND_ARGUMENT.findall(path.read_text()))
    return found


def test_every_kind_raised_in_the_code_is_registered():
    raised = kinds_in_code()

    assert {"NODE_DOWN", "WITHDRAW_STUCK", "EVENT_RELAY_LAG", "HOT_BALANCE_LOW"} <= raised
    assert raised - set(kinds.KINDS) == set()


def test_every_kind_has_a_severity_and_something_to_do():
    for code, kind in kinds.KINDS.items():
        assert kind.code == code
        assert kind.severity in Severity
        assert len(kind.what_to_do) > 60, code


def test_the_kinds_the_issue_names_are_registered_including_those_later_work_raises():
    assert {
        "NODE_DOWN",
        "NODE_STALE",
        "SCANNER_LAG",
        "HOT_BALANCE_LOW",
        "HOT_BALANCE_HIGH",
        "WITHDRAW_REVIEW_OVERDUE",
        "WITHDRAW_STUCK",
        "ABNORMAL_TRANSACTION",
        "EVENT_RELAY_LAG",
        "RECONCILIATION_MISMATCH",
        "LOGIN_THROTTLED",
    } <= set(kinds.KINDS)


def test_every_kind_that_resolves_itself_has_a_check_that_resolves_it():
    checks_source = (ROOT / "monitoring" / "checks.py").read_text()

    for code in kinds.kinds_resolving_themselves():
        if kinds.KINDS[code].quiet_resolve_seconds:
            continue  # resolved by the generic quiet-time check
        assert f'kind="{code}"' in checks_source, code


def test_an_unregistered_kind_is_still_recorded_with_a_generic_text():
    assert kinds.kind_get("SOMETHING_NEW").what_to_do == kinds.UNKNOWN_WHAT_TO_DO


def test_a_webhook_without_its_secret_stops_the_service_at_start():
    import os
    import subprocess
    import sys

    env = {**os.environ, "ALERT_WEBHOOK_URL": "https://hooks.example.com/wallet", "ALERT_WEBHOOK_SECRET": ""}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )

    assert done.returncode != 0
    assert "ALERT_WEBHOOK_URL needs ALERT_WEBHOOK_SECRET" in done.stderr
