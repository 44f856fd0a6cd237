"""Fixtures of the proof-of-reserves tests: the addresses tests' throwaway KEK, seeds and leak watch, the dev nodes."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from addresses.tests.conftest import (  # noqa: F401
    _no_secret_leaks,
    deposit_seeds,
    hot_seeds,
    leak_watch,
    seeded_coins,
    test_kek,
    user_client,
)
from assets.models import Balance

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "verify_reserves.py"


def balance_set(user_id: int, coin_id: str, *, available: str = "0", frozen: str = "0", debt: str = "0") -> None:
    """Give a user a ledger balance as it may stand (written directly: these tests read the ledger, not book it)."""
    Balance.objects.update_or_create(
        user_id=user_id,
        coin_id=coin_id,
        defaults={"available": Decimal(available), "frozen": Decimal(frozen), "debt": Decimal(debt)},
    )


def user_make(name: str):
    return get_user_model().objects.create_user(username=name, password=f"{name}-password-1")


def verify_run(proof: dict, tmp_path: Path, *args: str, python: tuple[str, ...] = (sys.executable,)):
    """Run the standalone verifier on proof (written to a file) as a user would; return the finished process."""
    path = tmp_path / "proof.json"
    path.write_text(json.dumps(proof))
    return subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [*python, str(SCRIPT), str(path), *args], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def proof_of(user_client):  # noqa: F811 - the fixture imported above
    """GET the authenticated user's proof of a coin; fail unless it is served."""

    def get(coin_id: str) -> dict:
        response = user_client.get("/api/v1/wallet/reserves/proof", {"coin": coin_id})
        assert response.status_code == 200, response.content
        return response.json()

    return get
