"""Set up Django for a benchmark against a MariaDB database of its own (created and migrated here)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def setup(database: str) -> None:
    """Point Django at mysql://.../<database> (MariaDB on loopback by default), create and migrate it."""
    sys.path.insert(0, str(ROOT))
    server = os.environ.get("BENCH_MYSQL_URL", "mysql://root:@127.0.0.1:3306")
    os.environ["DATABASE_URL"] = f"{server.rstrip('/')}/{database}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # As in production: DEBUG would record every query in memory and wrap every cursor.
    os.environ.setdefault("DJANGO_DEBUG", "false")
    import dj_database_url
    import MySQLdb

    cfg = dj_database_url.parse(os.environ["DATABASE_URL"])
    admin = MySQLdb.connect(host=cfg["HOST"], port=int(cfg["PORT"] or 3306), user=cfg["USER"], passwd=cfg["PASSWORD"])
    admin.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
    admin.close()

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
