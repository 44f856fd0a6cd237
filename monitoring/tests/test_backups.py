"""Encrypted backups of the database and the key vault, verified, restored, and a restore drill on MariaDB."""

from __future__ import annotations

import base64
import io
import json
import logging
import sqlite3
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from eth_account import Account
from eth_utils import to_checksum_address

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType, KeySecret, WalletAddress
from assets import selectors as assets_selectors
from assets.models import Balance, Flow, OutboxMessage
from coins.models import CoinConfig
from monitoring import checks
from monitoring.backups import archive, crypto
from monitoring.backups.crypto import BackupError
from monitoring.models import Alert, BackupKind, BackupRun
from monitoring.tests.conftest import TEST_BACKUP_KEY, TEST_KEK, TEST_MNEMONIC
from recharges import services as recharges_services
from recharges import watchlist
from recharges.models import RechargeRecord
from recharges.tests.fakechain import FakeChain, transfer
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawAuditLog, WithdrawRecord, WithdrawStatus

pytestmark = pytest.mark.django_db(transaction=True)

SQLITE = "django.db.backends.sqlite3"
# TEST-ONLY: the BIP39 reference mnemonic of entropy 00..00, for the deposit seed.
TEST_MNEMONIC_DEPOSIT = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about"


def sqlite_database(path: Path) -> dict:
    """A small SQLite database with a blob column and Django's migration table."""
    db = sqlite3.connect(str(path))
    db.executescript(
        """
        CREATE TABLE django_migrations (id INTEGER PRIMARY KEY, app TEXT, name TEXT, applied TEXT);
        INSERT INTO django_migrations (app, name, applied) VALUES
            ('assets', '0001_initial', '2026-01-01'), ('assets', '0002_outbox', '2026-01-02');
        CREATE TABLE ledger (id INTEGER PRIMARY KEY, memo TEXT, amount TEXT, blob BLOB);
        """
    )
    db.executemany(
        "INSERT INTO ledger (memo, amount, blob) VALUES (?, ?, ?)",
        [(f"plaintext-marker-{n}", f"{n}.000000000000000001", bytes([n]) * 40) for n in range(200)],
    )
    db.commit()
    db.close()
    return {"ENGINE": SQLITE, "NAME": str(path)}


def rows(path: Path) -> list[tuple]:
    db = sqlite3.connect(str(path))
    try:
        return db.execute("SELECT * FROM ledger ORDER BY id").fetchall()
    finally:
        db.close()


class TestSqlite:
    def test_a_database_round_trips_through_an_encrypted_backup_with_its_manifest(self, backup_key, tmp_path):
        source = sqlite_database(tmp_path / "source.sqlite3")

        backup = archive.database_backup(database=source)
        archive.database_restore(
            path=backup.path, target={"ENGINE": SQLITE, "NAME": str(tmp_path / "restored.sqlite3")}
        )

        assert rows(tmp_path / "restored.sqlite3") == rows(tmp_path / "source.sqlite3")
        manifest = json.loads((backup.path / "manifest.json").read_text())
        (entry,) = manifest["files"]
        stored = backup.path / entry["name"]
        assert (manifest["kind"], manifest["engine"], manifest["schema"]) == (
            "database",
            "sqlite",
            {"assets": "0002_outbox"},
        )
        assert manifest["key_id"] == crypto.BackupKey(secret=TEST_BACKUP_KEY).key_id
        assert entry["sha256"] == crypto.file_sha256(stored) and entry["size_bytes"] == stored.stat().st_size
        assert manifest["started_at"] <= manifest["finished_at"] and manifest["hmac_sha256"]
        assert b"plaintext-marker" not in stored.read_bytes()
        assert stored.stat().st_mode & 0o777 == 0o600
        run = BackupRun.objects.get()
        assert (run.kind, run.name, run.location) == (BackupKind.DATABASE, backup.name, str(backup.path))

    def test_verification_finds_a_changed_byte_a_changed_manifest_and_the_wrong_key(
        self, backup_key, tmp_path, monkeypatch
    ):
        backup = archive.database_backup(database=sqlite_database(tmp_path / "source.sqlite3"))
        stored = next(backup.path.glob("*.enc"))
        archive.backup_verify(path=backup.path)

        data = bytearray(stored.read_bytes())
        data[len(data) // 2] ^= 0x01
        stored.write_bytes(bytes(data))
        with pytest.raises(BackupError, match="does not match its checksum"):
            archive.backup_verify(path=backup.path)

        manifest = json.loads((backup.path / "manifest.json").read_text())
        manifest["files"][0]["sha256"] = crypto.file_sha256(stored)  # someone "fixes" the checksum too
        (backup.path / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(BackupError, match=r"manifest of .* was altered"):
            archive.backup_verify(path=backup.path)

        with pytest.raises(BackupError, match="does not decrypt"):
            crypto.open_sealed(
                key=crypto.backup_key_load(), source=stored, target=io.BytesIO(), backup_name=backup.path.name
            )

        monkeypatch.setenv("BACKUP_KEY", base64.b64encode(bytes(32)).decode())
        with pytest.raises(BackupError, match="was made with backup key"):
            archive.backup_verify(path=backup.path)

    def test_a_restore_never_merges_into_a_database_holding_tables(self, backup_key, tmp_path):
        backup = archive.database_backup(database=sqlite_database(tmp_path / "source.sqlite3"))
        occupied = sqlite_database(tmp_path / "occupied.sqlite3")

        with pytest.raises(BackupError, match="already holds"):
            archive.database_restore(path=backup.path, target=occupied)

        assert len(rows(tmp_path / "occupied.sqlite3")) == 200

    def test_old_backups_beyond_the_kept_number_are_pruned(self, backup_key, settings, tmp_path):
        settings.BACKUP_KEEP = 2
        source = sqlite_database(tmp_path / "source.sqlite3")

        made = [archive.database_backup(database=source).name for _ in range(3)]

        kept = [p.name for p in archive.backups_list(directory=settings.BACKUP_DIR, kind=BackupKind.DATABASE)]
        assert kept == made[1:]


class TestBackupKey:
    def test_comes_from_the_environment_or_a_file_and_is_never_the_kek(self, monkeypatch, settings, tmp_path):
        monkeypatch.delenv("BACKUP_KEY", raising=False)
        key_file = tmp_path / "backup.key"
        key_file.write_text("# the backup key\n" + base64.b64encode(TEST_BACKUP_KEY).decode() + "\n")
        settings.BACKUP_KEY_FILE = str(key_file)
        assert crypto.backup_key_load().secret == TEST_BACKUP_KEY

        monkeypatch.setenv("WALLET_KEK", "1:" + base64.b64encode(TEST_BACKUP_KEY).decode())
        with pytest.raises(ImproperlyConfigured, match="must not be the key-encryption key"):
            crypto.backup_key_load()

    def test_production_needs_one_and_development_makes_a_labelled_one(self, monkeypatch, settings, tmp_path):
        monkeypatch.delenv("BACKUP_KEY", raising=False)
        settings.BACKUP_KEY_FILE = ""
        settings.VAR_DIR = tmp_path
        settings.PRODUCTION = True
        with pytest.raises(ImproperlyConfigured, match="backups need a key"):
            crypto.backup_key_load()

        settings.PRODUCTION = False
        key = crypto.backup_key_load()

        assert "DEVELOPMENT ONLY" in (tmp_path / "DEV-ONLY-backup-key.txt").read_text()
        assert crypto.backup_key_load() == key
        assert repr(key) == f"BackupKey(id={key.key_id})"


class TestCommandsAndAlerts:
    def test_a_failed_backup_raises_backup_failed_which_a_later_backup_resolves(self, backup_key, monkeypatch):
        monkeypatch.setenv("BACKUP_KEY", "not base64!")
        with pytest.raises(CommandError, match="database backup failed: BACKUP_KEY is not base64"):
            call_command("backup_create", stdout=io.StringIO())
        (alert,) = Alert.objects.filter(kind="BACKUP_FAILED")
        assert alert.subject == "database backup"

        monkeypatch.setenv("BACKUP_KEY", base64.b64encode(TEST_BACKUP_KEY).decode())
        call_command("backup_create", stdout=io.StringIO())
        checks.monitoring_check()

        alert.refresh_from_db()
        assert alert.resolved_how == "a later backup of that kind finished"

    def test_no_recent_backup_raises_backup_overdue_until_one_finishes(self, backup_key, settings):
        settings.BACKUP_MAX_AGE_HOURS = 26
        call_command("backup_create", stdout=io.StringIO())
        BackupRun.objects.update(finished_at=timezone.now() - timedelta(hours=27))

        checks.monitoring_check()
        checks.monitoring_check()
        (alert,) = Alert.objects.filter(kind="BACKUP_OVERDUE")
        assert alert.count == 2

        call_command("backup_create", stdout=io.StringIO())
        checks.monitoring_check()

        alert.refresh_from_db()
        assert alert.resolved_how == "a database backup finished"

    def test_verify_checks_the_latest_backups_and_fails_with_one_line(self, backup_key, test_kek, settings):
        call_command("backup_create", "--vault", stdout=io.StringIO())
        out = io.StringIO()

        call_command("backup_verify", "--latest", stdout=out)

        assert [line.split(":")[0].split("-")[0] for line in out.getvalue().splitlines()] == ["db", "vault"]
        latest = archive.backups_list(directory=settings.BACKUP_DIR, kind=BackupKind.DATABASE)[-1]
        (latest / "manifest.json").unlink()
        with pytest.raises(CommandError, match="is not a readable manifest"):
            call_command("backup_verify", str(latest), stdout=io.StringIO())


# --- the restore drill on MariaDB --------------------------------------------------------------------


def _ledger() -> dict[str, list[dict]]:
    """Every row of the ledger, deposits, withdrawals, events, addresses and the vault, in id order."""
    models = (Balance, Flow, RechargeRecord, WithdrawRecord, WithdrawAuditLog, OutboxMessage, WalletAddress, KeySecret)
    snapshot = {}
    for model in models:
        values = list(model.objects.order_by("id").values())
        for row in values:
            if "ciphertext" in row:
                row["ciphertext"] = bytes(row["ciphertext"])
        snapshot[model._meta.db_table] = values
    return snapshot


@contextmanager
def database_switched(name: str):
    """Point this thread's default connection at another database of the same server."""
    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


def _build_business(user_model) -> None:
    """Deposits, withdrawals (internal, on chain, rejected) and their flows, all through the services."""
    alice = user_model.objects.create_user("alice", password="alice-password-1")
    bob = user_model.objects.create_user("bob", password="bob-password-1")
    auditor = user_model.objects.create_user("auditor", password="auditor-password-1", is_staff=True)
    for chain_id in ("ETH", "TRON"):
        signer.hd_wallet_create(
            chain_id=chain_id, purpose=AddressType.USER_DEPOSIT, mnemonic=TEST_MNEMONIC_DEPOSIT, label="test-only"
        )
    signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC, label="test-only")
    addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=2)
    signer.private_key_import(
        chain_id="TRON", private_key_hex=Account.create().key.hex().removeprefix("0x"), wallet_type="withdraw"
    )
    alice_address = addresses_services.deposit_address_assign(user=alice, coin_id="ETH").address
    bob_address = addresses_services.deposit_address_assign(user=bob, coin_id="ETH").address
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    chain = FakeChain("ETH")
    chain.mine([transfer(to=alice_address, amount=120 * 10**18), transfer(to=bob_address, amount=3 * 10**18)])
    chain.mine([transfer(to=alice_address.lower(), amount=5 * 10**17)], count=3)
    now = timezone.now()
    recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=chain)
    recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=chain)
    assert Balance.objects.get(user=alice, coin_id="ETH").available == Decimal("120.5")

    outside = to_checksum_address("0x" + "5e" * 20)
    withdrawals_services.withdrawal_apply(
        user_id=alice.id, coin_id="ETH", to_address=bob_address, amount="2.5", idempotency_key="to-bob"
    )
    withdrawals_services.withdrawal_apply(
        user_id=alice.id, coin_id="ETH", to_address=outside, amount="1.25", idempotency_key="small"
    )
    big = withdrawals_services.withdrawal_apply(
        user_id=alice.id, coin_id="ETH", to_address=outside, amount="50", idempotency_key="big"
    )
    withdrawals_services.withdrawal_reject(withdraw_id=big.id, auditor_id=auditor.id, remark="unknown address")
    pending = withdrawals_services.withdrawal_apply(
        user_id=alice.id, coin_id="ETH", to_address=outside, amount="20", idempotency_key="review"
    )
    assert pending.status == WithdrawStatus.PENDING_REVIEW


@pytest.mark.mysql
def test_restore_drill_a_fresh_database_holds_the_same_ledger_and_its_vault_decrypts_every_key(
    backup_key, test_kek, settings, caplog
):
    caplog.set_level(logging.DEBUG)
    watchlist.watchlist_reset()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.SCAN_START_HEIGHTS = {"ETH": 0}
    _build_business(get_user_model())
    before = _ledger()
    assert assets_selectors.ledger_mismatches() == []
    assert len(before["asset_flow"]) >= 8 and len(before["wallet_key_vault"]) == 4

    call_command("backup_create", "--vault", stdout=io.StringIO())
    database_backup = archive.backups_list(directory=settings.BACKUP_DIR, kind=BackupKind.DATABASE)[-1]
    vault_export = archive.backups_list(directory=settings.BACKUP_DIR, kind=BackupKind.VAULT)[-1]
    db = connection.settings_dict
    fresh = f"{db['NAME']}_drill"
    url = f"mysql://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 3306}/{fresh}"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{fresh}`")
    try:
        call_command("backup_restore", str(database_backup), "--database-url", url, "--create", stdout=io.StringIO())

        with database_switched(fresh):
            restored = _ledger()
            mismatches = assets_selectors.ledger_mismatches()
            report = signer.secrets_verify()
            with connection.cursor() as cursor:  # the vault export alone brings every key back
                cursor.execute("SET FOREIGN_KEY_CHECKS = 0")
                cursor.execute("DELETE FROM wallet_key_vault")
                cursor.execute("SET FOREIGN_KEY_CHECKS = 1")
            out = io.StringIO()
            call_command("vault_restore", str(vault_export), "--verify", stdout=out)
            vault_again = _ledger()["wallet_key_vault"]
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{fresh}`")

    assert restored == before
    assert mismatches == []
    assert (report.ok, report.checked) == (True, 4)
    assert "4 vault entries restored, 0 already present" in out.getvalue()
    assert "every one of 4 entries decrypts" in out.getvalue()
    assert vault_again == before["wallet_key_vault"]
    logged = caplog.text
    for secret in (TEST_KEK, TEST_BACKUP_KEY):
        assert base64.b64encode(secret).decode() not in logged and secret.hex() not in logged
    assert "legal winner thank" not in logged


def test_the_vault_export_holds_the_sealed_rows_and_never_a_decrypted_key(backup_key, test_kek):
    from eth_account.hdaccount.mnemonic import Mnemonic

    secret = signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC, label="t")

    export = archive.vault_export()
    document = io.BytesIO()
    entry = export.manifest["files"][0]
    crypto.open_sealed(
        key=crypto.backup_key_load(), source=export.path / entry["name"], target=document, backup_name=export.name
    )

    text = document.getvalue().decode()
    stored = KeySecret.objects.get(id=secret.id)
    assert base64.b64encode(bytes(stored.ciphertext)).decode() in text
    assert Mnemonic.to_seed(TEST_MNEMONIC).hex() not in text and "legal winner" not in text
    assert export.manifest["vault"]["rows"] == 1
    assert export.manifest["vault"]["key_versions"] == {"1": 1}
    assert export.manifest["vault"]["entries"][0]["fingerprint"] == stored.fingerprint


def test_a_vault_restore_refuses_a_row_that_holds_another_secret(backup_key, test_kek):
    secret = signer.hd_wallet_create(chain_id="ETH", purpose=AddressType.HOT, mnemonic=TEST_MNEMONIC, label="t")
    export = archive.vault_export()
    KeySecret.objects.filter(id=secret.id).update(ciphertext=b"\x00" * 60)

    with pytest.raises(CommandError, match="holds another secret"):
        call_command("vault_restore", str(export.path), stdout=io.StringIO())

    assert bytes(KeySecret.objects.get(id=secret.id).ciphertext) == b"\x00" * 60
