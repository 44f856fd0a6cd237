"""Export the key vault's rows (still sealed under the KEK), encrypted under the backup key, with a manifest."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand

from monitoring.backups import archive
from monitoring.management.commands.backup_create import run_or_alert


class Command(BaseCommand):
    help = "Export wallet_key_vault to BACKUP_DIR: never decrypted, encrypted again under the backup key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dir", type=Path, help="where to write (default BACKUP_DIR)")

    def handle(self, *args: object, **options: object) -> None:
        export = run_or_alert(subject="vault export", action=lambda: archive.vault_export(directory=options["dir"]))
        rows = export.manifest["vault"]["rows"]  # type: ignore[index]
        self.stdout.write(f"key vault export {export.name} ({rows} entries) written to {export.path}")
