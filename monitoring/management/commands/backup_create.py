"""Write an encrypted, consistent backup of the database (and, with --vault, an export of the key vault)."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from monitoring import services as monitoring_services
from monitoring.backups import archive
from monitoring.backups.crypto import BackupError


def run_or_alert(*, subject: str, action) -> archive.Backup:
    """Run a backup; on failure raise BACKUP_FAILED (it resolves when a later one succeeds) and exit non-zero."""
    try:
        return action()
    except (BackupError, ImproperlyConfigured, OSError) as exc:
        text = f"{subject} failed: {exc}"
        monitoring_services.alert_raise_alone(kind="BACKUP_FAILED", subject=subject, message=text)
        raise CommandError(text) from None


class Command(BaseCommand):
    help = "Back up the database to BACKUP_DIR, encrypted under the backup key, with a manifest."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dir", type=Path, help="where to write (default BACKUP_DIR)")
        parser.add_argument("--vault", action="store_true", help="also export the key vault (vault_export)")

    def handle(self, *args: object, **options: object) -> None:
        directory = options["dir"]
        backup = run_or_alert(subject="database backup", action=lambda: archive.database_backup(directory=directory))
        self.stdout.write(f"database backup {backup.name} written to {backup.path}")
        if options["vault"]:
            export = run_or_alert(subject="vault export", action=lambda: archive.vault_export(directory=directory))
            self.stdout.write(f"key vault export {export.name} written to {export.path}")
