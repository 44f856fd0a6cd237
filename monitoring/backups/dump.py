"""
Consistent dumps and loads of a whole database, per engine.

MariaDB/MySQL: the server's own dump tool (`mariadb-dump`, or `mysqldump`) with
`--single-transaction` (one consistent InnoDB snapshot, no lock on writers), loaded back with the
`mariadb` / `mysql` client. Credentials go through a private option file, never the command line
(where `ps` would show them). SQLite: its online backup API, which copies a consistent snapshot
while others write.

`db` is a Django DATABASES entry (ENGINE, NAME, USER, PASSWORD, HOST, PORT).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from monitoring.backups.crypto import BackupError

SAFE_NAME = re.compile(r"^[A-Za-z0-9_$-]{1,64}$")
SCHEMA_QUERY = "SELECT app, MAX(name) FROM django_migrations GROUP BY app ORDER BY app"


def engine_of(db: dict) -> str:
    """Return "mysql" or "sqlite" for a DATABASES entry; BackupError for anything else."""
    engine = str(db.get("ENGINE", ""))
    if "mysql" in engine:
        return "mysql"
    if "sqlite" in engine:
        return "sqlite"
    raise BackupError(f"backups support MariaDB/MySQL and SQLite, not {engine}")


def _tool(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise BackupError(f"none of {', '.join(names)} is installed (Debian: apt-get install mariadb-client)")


@contextlib.contextmanager
def _option_file(db: dict) -> Iterator[str]:
    """A [client] option file readable only by us, holding the connection and its password."""
    lines = ["[client]"]
    for option, key in (("user", "USER"), ("password", "PASSWORD"), ("host", "HOST"), ("port", "PORT")):
        value = str(db.get(key) or "")
        if value:
            if "\n" in value:
                raise BackupError(f"the database {option} holds a line break")
            if option == "password":  # quoted: option files read \\ and \" as escapes inside quotes
                value = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            lines.append(f"{option}={value}")
    fd, path = tempfile.mkstemp(prefix="wallet-backup-", suffix=".cnf")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(path, 0o600)
        yield path
    finally:
        os.unlink(path)


def _database_name(db: dict) -> str:
    name = str(db.get("NAME") or "")
    if not SAFE_NAME.match(name):
        raise BackupError(f"unexpected database name {name!r}")
    return name


def _mysql_query(db: dict, sql: str, *, database: bool = True) -> list[list[str]]:
    client = _tool("mariadb", "mysql")
    with _option_file(db) as options:
        args = [client, f"--defaults-extra-file={options}", "--batch", "--skip-column-names", "-e", sql]
        if database:
            args.append(_database_name(db))
        done = subprocess.run(args, capture_output=True, text=True, check=False)  # noqa: S603 - no shell, fixed tool
    if done.returncode != 0:
        raise BackupError(f"{Path(client).name} failed: {done.stderr.strip()[:300]}")
    return [line.split("\t") for line in done.stdout.splitlines() if line]


def schema_versions(db: dict, *, sqlite_path: Path | None = None) -> dict[str, str]:
    """Return {app: its latest applied migration} of a database ({} when Django never migrated it)."""
    if engine_of(db) == "mysql":
        tables = _mysql_query(db, "SHOW TABLES LIKE 'django_migrations'")
        return {app: name for app, name in _mysql_query(db, SCHEMA_QUERY)} if tables else {}
    name = str(sqlite_path or db["NAME"])
    connection = sqlite3.connect(name, uri=name.startswith("file:"))
    try:
        if not connection.execute("SELECT 1 FROM sqlite_master WHERE name = 'django_migrations'").fetchone():
            return {}
        return {app: name for app, name in connection.execute(SCHEMA_QUERY)}
    finally:
        connection.close()


def tool_version(db: dict) -> str:
    if engine_of(db) == "sqlite":
        return f"sqlite3 backup API {sqlite3.sqlite_version}"
    tool = _tool("mariadb-dump", "mysqldump")
    done = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    return done.stdout.strip()[:200]


@contextlib.contextmanager
def dump_stream(db: dict, *, scratch: Path) -> Iterator[BinaryIO]:
    """
    Yield a readable stream of a consistent dump of the database; check the dump ended well.

    :raises BackupError: the dump tool failed (its message, which never holds the password).
    """
    if engine_of(db) == "sqlite":
        snapshot = scratch / "snapshot.sqlite3"
        source = sqlite3.connect(str(db["NAME"]), uri=str(db["NAME"]).startswith("file:"))
        target = sqlite3.connect(str(snapshot))
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        with snapshot.open("rb") as handle:
            yield handle
        return
    tool = _tool("mariadb-dump", "mysqldump")
    errors = scratch / "dump.err"
    with _option_file(db) as options, errors.open("wb") as error_handle:
        process = subprocess.Popen(  # noqa: S603 - no shell, fixed tool and options
            [
                tool,
                f"--defaults-extra-file={options}",
                "--single-transaction",
                "--quick",
                "--hex-blob",
                "--default-character-set=utf8mb4",
                "--no-tablespaces",
                "--skip-dump-date",
                _database_name(db),
            ],
            stdout=subprocess.PIPE,
            stderr=error_handle,
        )
        try:
            assert process.stdout is not None
            yield process.stdout
        finally:
            if process.stdout is not None:
                process.stdout.close()
            code = process.wait()
    if code != 0:
        raise BackupError(f"{Path(tool).name} failed: {errors.read_text(errors='replace').strip()[:300]}")


def target_prepare(db: dict, *, create: bool) -> None:
    """
    Check the restore target exists (or create it) and holds no table: a restore never merges.

    :raises BackupError: the target is missing (without create) or not empty.
    """
    if engine_of(db) == "sqlite":
        path = Path(str(db["NAME"]))
        if path.exists() and path.stat().st_size > 0:
            connection = sqlite3.connect(str(path))
            try:
                tables = connection.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            finally:
                connection.close()
            if tables:
                raise BackupError(f"{path} already holds {tables} table(s): restore into an empty database")
        elif not path.parent.exists():
            raise BackupError(f"{path.parent} does not exist")
        return
    name = _database_name(db)
    exists = _mysql_query(db, f"SHOW DATABASES LIKE '{name}'", database=False)
    if not exists:
        if not create:
            raise BackupError(f"database {name} does not exist: create it, or pass --create")
        _mysql_query(db, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", database=False)
        return
    # name matched SAFE_NAME (no quote can pass): a literal here is safe, and the client takes no parameters.
    count_tables = f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = '{name}'"  # noqa: S608
    tables = _mysql_query(db, count_tables)
    if int(tables[0][0]):
        raise BackupError(f"database {name} already holds {tables[0][0]} table(s): restore into an empty database")


def load(db: dict, *, plain: Path) -> None:
    """Load a decrypted dump (plain) into the prepared, empty target database."""
    if engine_of(db) == "sqlite":
        source = sqlite3.connect(str(plain))
        try:
            if source.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                raise BackupError("the restored SQLite file fails its integrity check")
            target = sqlite3.connect(str(db["NAME"]))
            try:
                source.backup(target)
            finally:
                target.close()
        finally:
            source.close()
        return
    client = _tool("mariadb", "mysql")
    with _option_file(db) as options, plain.open("rb") as dump:
        done = subprocess.run(  # noqa: S603 - no shell, fixed tool and options
            [client, f"--defaults-extra-file={options}", "--default-character-set=utf8mb4", _database_name(db)],
            stdin=dump,
            capture_output=True,
            check=False,
        )
    if done.returncode != 0:
        raise BackupError(f"{Path(client).name} failed: {done.stderr.decode(errors='replace').strip()[:300]}")
