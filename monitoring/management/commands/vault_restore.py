"""Put a key vault export's rows back into the configured database, and prove they decrypt."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from addresses import signer
from monitoring.backups import archive
from monitoring.backups.crypto import BackupError


class Command(BaseCommand):
    help = (
        "Insert the rows of a vault export (vault-...) missing from DATABASE_URL's wallet_key_vault; rows "
        "already there must hold the same secret. With --verify, the signer then decrypts every entry "
        "under the KEK given to this process and checks its fingerprint."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path, help="the vault export directory (vault-...)")
        parser.add_argument("--verify", action="store_true", help="decrypt every entry with the KEK afterwards")

    def handle(self, *args: object, **options: object) -> None:
        try:
            inserted, present = archive.vault_restore(path=options["path"])
        except (BackupError, ImproperlyConfigured, OSError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{options['path'].name}: {inserted} vault entries restored, {present} already present")
        if options["verify"]:
            try:
                report = signer.secrets_verify()
            except ImproperlyConfigured as exc:
                raise CommandError(f"not verified: {exc}") from None
            if not report.ok:
                raise CommandError(f"entries {report.failed_ids} do not decrypt under the KEK given")
            self.stdout.write(f"every one of {report.checked} entries decrypts and matches its fingerprint")
