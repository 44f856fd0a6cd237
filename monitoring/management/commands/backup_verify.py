"""Verify a backup without restoring it: manifest HMAC, checksums, decryption."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from monitoring.backups import archive
from monitoring.backups.crypto import BackupError
from monitoring.models import BackupKind


class Command(BaseCommand):
    help = "Verify a backup directory (or the latest database backup and vault export with --latest)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", nargs="?", type=Path, help="a backup directory")
        parser.add_argument("--latest", action="store_true", help="the newest database backup and vault export")
        parser.add_argument("--dir", type=Path, help="where --latest looks (default BACKUP_DIR)")

    def handle(self, *args: object, **options: object) -> None:
        paths: list[Path] = []
        if options["path"] is not None:
            paths.append(options["path"])
        if options["latest"]:
            directory = options["dir"] or settings.BACKUP_DIR
            for kind in BackupKind:
                found = archive.backups_list(directory=directory, kind=kind)
                paths += found[-1:]
        if not paths:
            raise CommandError("give a backup directory, or --latest (none found)")
        for path in paths:
            try:
                manifest = archive.backup_verify(path=path)
            except (BackupError, ImproperlyConfigured, OSError) as exc:
                raise CommandError(f"{path.name}: {exc}") from None
            behind = archive.schema_behind(manifest)
            note = f"; migrate after restoring ({', '.join(behind)} differ)" if behind else ""
            self.stdout.write(f"{path.name}: ok ({manifest['kind']}, finished {manifest['finished_at']}){note}")
