"""
create_hd_wallet never leaves a seed in the vault whose mnemonic backup could not be written.

The generated mnemonic exists only in the process until the backup file is written; a seed
stored first and a backup that then fails (a mistyped folder, a full disk) is a hot or deposit
seed with no offline copy, and running the command again is refused because the seed exists.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from addresses.models import KeySecret
from addresses.tests.conftest import TEST_KEK_V1, kek_env

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _kek(monkeypatch, settings, tmp_path):
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"


def test_a_backup_that_cannot_be_written_leaves_no_seed_and_the_command_can_run_again(tmp_path):
    missing_folder = tmp_path / "no-such-folder" / "eth-hot.txt"

    with pytest.raises(CommandError, match="nothing was stored"):
        call_command(
            "create_hd_wallet", "--chain", "ETH", "--purpose", "hot", "--backup-file", str(missing_folder),
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip

    assert not KeySecret.objects.filter(chain_id="ETH").exists()
    backup = tmp_path / "eth-hot.txt"
    call_command(
        "create_hd_wallet", "--chain", "ETH", "--purpose", "hot", "--backup-file", str(backup),
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip
    assert KeySecret.objects.filter(chain_id="ETH").count() == 1
    assert len(backup.read_text().split()) == 24


def test_a_seed_refused_by_the_vault_leaves_no_backup_of_a_mnemonic_nobody_uses(tmp_path):
    call_command("create_hd_wallet", "--chain", "ETH", "--purpose", "hot", stdout=io.StringIO(), stderr=io.StringIO())
    backup = tmp_path / "second.txt"

    with pytest.raises(CommandError, match="already has an HD seed"):
        call_command(
            "create_hd_wallet", "--chain", "ETH", "--purpose", "hot", "--backup-file", str(backup),
            stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip

    assert not backup.exists()
