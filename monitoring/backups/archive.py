"""
Backups as ops use them: make one (database, or the key vault), verify one, restore one, prune.

Each backup is a directory `BACKUP_DIR/<name>/` (mode 0700) holding its encrypted file(s) and
`manifest.json`: format, kind, name, times, the backup key's public id, the engine and database
name, the schema version (latest applied migration per app), tool version, and per file its size
and sha256 (as stored) and the sha256 and size of the content before compression and encryption.
The manifest carries an HMAC under the backup key; every file's name and backup are bound into its
encryption. A finished backup is recorded in monitoring_backup_run (for BACKUP_OVERDUE and
/metrics); the files remain the truth.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connections, transaction
from django.db.migrations.loader import MigrationLoader
from django.utils import timezone

from monitoring.backups import crypto, dump, vault
from monitoring.backups.crypto import BackupError
from monitoring.models import BackupKind, BackupRun

logger = logging.getLogger(__name__)

FORMAT = "wallet-backup/1"
MANIFEST = "manifest.json"
PREFIX = {BackupKind.DATABASE: "db", BackupKind.VAULT: "vault"}


@dataclass(frozen=True)
class Backup:
    name: str
    path: Path
    manifest: dict[str, object]


@contextmanager
def _scratch() -> Iterator[Path]:
    """A private directory for decrypted content, removed afterwards whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix="wallet-backup-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _new_folder(directory: Path, kind: BackupKind, now: datetime) -> Path:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    # Names sort in time order (to the microsecond): pruning and --latest rely on it.
    name = f"{PREFIX[kind]}-{now.strftime('%Y%m%dT%H%M%S.%fZ')}-{secrets.token_hex(3)}"
    folder = directory / name
    folder.mkdir(mode=0o700)
    return folder


@transaction.atomic(durable=True)
def _record(*, kind: BackupKind, folder: Path, manifest_sha256: str, started: datetime, finished: datetime) -> None:
    size = sum(f.stat().st_size for f in folder.iterdir())
    BackupRun.objects.create(
        kind=kind,
        name=folder.name,
        location=str(folder),
        size_bytes=size,
        manifest_sha256=manifest_sha256,
        started_at=started,
        finished_at=finished,
    )


def _finish(
    *, key: crypto.BackupKey, kind: BackupKind, folder: Path, manifest: dict[str, object], started: datetime
) -> Backup:
    finished = timezone.now()
    manifest["finished_at"] = finished.isoformat()
    manifest_sha256 = crypto.manifest_write(key=key, path=folder / MANIFEST, manifest=manifest)
    _record(kind=kind, folder=folder, manifest_sha256=manifest_sha256, started=started, finished=finished)
    backups_prune(directory=folder.parent, kind=kind, keep=settings.BACKUP_KEEP)
    logger.info("backup %s written to %s", folder.name, folder)
    return Backup(name=folder.name, path=folder, manifest=manifest)


def database_backup(*, directory: Path | None = None, database: dict | None = None) -> Backup:
    """
    Write an encrypted, consistent backup of the database (default: this service's) with its manifest.

    :raises BackupError: the dump failed, migrations ran meanwhile, or the directory is unusable;
        a half-written backup directory is removed.
    """
    key = crypto.backup_key_load()
    db = dict(database or connections["default"].settings_dict)
    engine = dump.engine_of(db)
    started = timezone.now()
    folder = _new_folder(directory or settings.BACKUP_DIR, BackupKind.DATABASE, started)
    try:
        with _scratch() as scratch:
            schema = dump.schema_versions(db) if engine == "mysql" else None
            target = folder / ("database.sql.gz.enc" if engine == "mysql" else "database.sqlite3.gz.enc")
            with dump.dump_stream(db, scratch=scratch) as stream:
                sealed = crypto.seal_stream(key=key, source=stream, target=target, backup_name=folder.name)
            if engine == "sqlite":
                schema = dump.schema_versions(db, sqlite_path=scratch / "snapshot.sqlite3")
            elif dump.schema_versions(db) != schema:
                raise BackupError("migrations ran while the backup was taken: take it again")
        manifest: dict[str, object] = {
            "format": FORMAT,
            "kind": "database",
            "name": folder.name,
            "key_id": key.key_id,
            "encryption": "AES-256-GCM, gzip inside",
            "started_at": started.isoformat(),
            "engine": engine,
            "database": str(db.get("NAME")),
            "schema": schema,
            "tool": dump.tool_version(db),
            "files": [dataclasses.asdict(sealed)],
        }
        return _finish(key=key, kind=BackupKind.DATABASE, folder=folder, manifest=manifest, started=started)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def vault_export(*, directory: Path | None = None) -> Backup:
    """
    Write the key vault's rows, still sealed under the KEK, encrypted again under the backup key,
    with a manifest listing the entries' public identifiers.
    """
    key = crypto.backup_key_load()
    started = timezone.now()
    folder = _new_folder(directory or settings.BACKUP_DIR, BackupKind.VAULT, started)
    try:
        text, summary = vault.vault_document()
        sealed = crypto.seal_stream(
            key=key, source=io.BytesIO(text.encode()), target=folder / "vault.json.gz.enc", backup_name=folder.name
        )
        manifest: dict[str, object] = {
            "format": FORMAT,
            "kind": "vault",
            "name": folder.name,
            "key_id": key.key_id,
            "encryption": "AES-256-GCM, gzip inside; each secret still sealed under the vault's KEK",
            "started_at": started.isoformat(),
            "schema": dump.schema_versions(dict(connections["default"].settings_dict)),
            "vault": summary,
            "files": [dataclasses.asdict(sealed)],
        }
        return _finish(key=key, kind=BackupKind.VAULT, folder=folder, manifest=manifest, started=started)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


# --- verify, restore, prune ------------------------------------------------------------------------


class _Discard(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        return len(data)


def _open(path: Path, key: crypto.BackupKey) -> dict[str, object]:
    manifest = crypto.manifest_read(key=key, path=path / MANIFEST)
    if manifest.get("format") != FORMAT or manifest.get("name") != path.name:
        raise BackupError(f"{path.name} is not a {FORMAT} backup (or was renamed)")
    return manifest


def _check_file(*, key: crypto.BackupKey, folder: Path, entry: dict[str, object], target) -> None:
    stored = folder / str(entry["name"])
    if not stored.exists():
        raise BackupError(f"{stored.name} is missing from {folder.name}")
    if crypto.file_sha256(stored) != entry["sha256"]:
        raise BackupError(f"{stored.name} does not match its checksum in the manifest")
    size, digest = crypto.open_sealed(key=key, source=stored, target=target, backup_name=folder.name)
    if (size, digest) != (entry["plain_bytes"], entry["plain_sha256"]):
        raise BackupError(f"the content of {stored.name} does not match the manifest")


def backup_verify(*, path: Path) -> dict[str, object]:
    """
    Check a backup end to end without restoring it: manifest HMAC, every file's checksum, and that
    every file decrypts and decompresses to the content the manifest describes. Returns the manifest.

    :raises BackupError: what is wrong.
    """
    key = crypto.backup_key_load()
    manifest = _open(path, key)
    for entry in manifest["files"]:  # type: ignore[union-attr]
        _check_file(key=key, folder=path, entry=entry, target=_Discard())
    return manifest


def schema_behind(manifest: dict[str, object]) -> list[str]:
    """Return the apps whose latest migration in this code is not the backup's (run migrate after restoring)."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    latest: dict[str, str] = {}
    for app, name in loader.graph.leaf_nodes():
        latest[app] = max(latest.get(app, ""), name)
    schema = manifest.get("schema") or {}
    return sorted(app for app, name in latest.items() if schema.get(app) != name)  # type: ignore[union-attr]


def database_restore(*, path: Path, target: dict, create: bool = False) -> dict[str, object]:
    """
    Restore a database backup into target (a DATABASES entry), which must be empty (or, with
    create, missing on a MariaDB/MySQL server). Everything is verified before the first row is loaded.

    :raises BackupError: the backup fails verification, the target is not empty, or loading failed.
    """
    key = crypto.backup_key_load()
    manifest = _open(path, key)
    if manifest.get("kind") != "database":
        raise BackupError(f"{path.name} is a {manifest.get('kind')} backup, not a database backup")
    if manifest.get("engine") != dump.engine_of(target):
        raise BackupError(f"{path.name} holds a {manifest.get('engine')} database; the target is not one")
    (entry,) = manifest["files"]  # type: ignore[misc]
    with _scratch() as scratch:
        plain = scratch / "restore.plain"
        with plain.open("wb") as handle:
            _check_file(key=key, folder=path, entry=entry, target=handle)
        dump.target_prepare(target, create=create)
        dump.load(target, plain=plain)
    logger.info("backup %s restored into %s", path.name, target.get("NAME"))
    return manifest


def vault_restore(*, path: Path) -> tuple[int, int]:
    """
    Put a vault export's rows back into the configured database; returns (inserted, already there).

    :raises BackupError: the export fails verification, or a row there holds another secret.
    """
    key = crypto.backup_key_load()
    manifest = _open(path, key)
    if manifest.get("kind") != "vault":
        raise BackupError(f"{path.name} is a {manifest.get('kind')} backup, not a vault export")
    (entry,) = manifest["files"]  # type: ignore[misc]
    buffer = io.BytesIO()
    _check_file(key=key, folder=path, entry=entry, target=buffer)
    return vault.vault_load(buffer.getvalue().decode())


def backups_list(*, directory: Path, kind: BackupKind) -> list[Path]:
    """Return the backup directories of a kind in directory, oldest first (their names sort by time)."""
    if not directory.exists():
        return []
    prefix = f"{PREFIX[kind]}-"
    return sorted(
        p for p in directory.iterdir() if p.is_dir() and p.name.startswith(prefix) and (p / MANIFEST).exists()
    )


def backups_prune(*, directory: Path, kind: BackupKind, keep: int) -> list[Path]:
    """Delete all but the newest keep backups of a kind (keep 0: delete none); return what was deleted."""
    if keep <= 0:
        return []
    doomed = backups_list(directory=directory, kind=kind)[:-keep]
    for folder in doomed:
        shutil.rmtree(folder)
        logger.info("backup %s pruned (BACKUP_KEEP=%s)", folder.name, keep)
    return doomed
