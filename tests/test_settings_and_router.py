from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from assets.models import Flow
from monitoring.models import Alert
from wallet_project.db_router import ReadReplicaRouter

ROOT = Path(__file__).resolve().parent.parent


def _start_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "WALLET_"))}
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "wallet_project.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"WALLET_ENV": "production"}, "DJANGO_SECRET_KEY must be set in production"),
        ({"WALLET_ENV": "production", "DJANGO_SECRET_KEY": "x" * 50}, "production needs DATABASE_URL"),
        ({"WALLET_ENV": "staging"}, "WALLET_ENV must be development or production"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG must be true or false"),
    ],
)
def test_refuses_to_start_on_unsafe_or_malformed_settings(env, complaint, tmp_path):
    started = _start_settings(WALLET_VAR_DIR=str(tmp_path), **env)

    assert started.returncode != 0
    assert complaint in started.stderr


def test_starts_on_embedded_defaults_with_nothing_set(tmp_path):
    started = _start_settings(WALLET_VAR_DIR=str(tmp_path))

    assert started.returncode == 0, started.stderr


class TestReadReplicaRouter:
    def test_reads_money_from_the_primary_even_with_a_replica(self):
        replica = {"replica": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
        with override_settings(DATABASES={"default": {}, **replica}):
            router = ReadReplicaRouter()

            assert router.db_for_read(Flow) == "default"
            assert router.db_for_read(Alert) == "replica"
            assert router.db_for_write(Alert) == "default"
            assert router.allow_migrate("replica", "assets") is False

    def test_reads_reports_from_the_primary_without_a_replica(self):
        assert ReadReplicaRouter().db_for_read(Alert) == "default"
