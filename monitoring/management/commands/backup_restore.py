"""Restore a database backup into an empty database."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from monitoring.backups import archive
from monitoring.backups.crypto import BackupError


class Command(BaseCommand):
    help = (
        "Restore a database backup into the empty database at --database-url (default DATABASE_URL). "
        "Verified completely before anything is loaded; never merges into a database holding tables."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path, help="the backup directory (db-...)")
        parser.add_argument("--database-url", default="", help="where to restore, e.g. mysql://root:pw@db:3306/wallet2")
        parser.add_argument("--create", action="store_true", help="create the MariaDB/MySQL database if missing")

    def handle(self, *args: object, **options: object) -> None:
        url = options["database_url"] or settings.DATABASE_URL
        try:
            target = dj_database_url.parse(url)
        except ValueError:
            raise CommandError("--database-url is not a database URL") from None
        try:
            manifest = archive.database_restore(path=options["path"], target=target, create=options["create"])
        except (BackupError, ImproperlyConfigured, OSError) as exc:
            raise CommandError(str(exc)) from None
        behind = archive.schema_behind(manifest)
        self.stdout.write(f"{options['path'].name} restored into {target['NAME']}")
        if behind:
            self.stdout.write(f"the schema differs from this code for {', '.join(behind)}: run migrate against it")
