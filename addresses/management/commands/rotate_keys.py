from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from addresses import signer
from addresses.models import KeySecret


class Command(BaseCommand):
    help = (
        "Re-encrypt every key vault entry under KEK version --to-version (both the old and the new KEK "
        "must be loaded), one transaction per entry; safe to run again after an interruption. Then "
        "decrypt every entry and check it against its fingerprint; exits non-zero if any fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--to-version", type=int, required=True)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **options: object) -> None:
        to_version = options["to_version"]
        total = KeySecret.objects.exclude(key_version=to_version).count()
        with tqdm(total=total, unit="key", disable=options["no_progress"], file=self.stderr) as bar:
            rotated = signer.secrets_rotate(to_version=to_version, progress=bar.update)
        report = signer.secrets_verify()
        self.stdout.write(
            f"Re-encrypted {rotated} entries; verified {report.checked}: by KEK version "
            f"{dict(sorted(report.by_version.items()))}"
        )
        if not report.ok:
            raise CommandError(f"entries {report.failed_ids} do not decrypt or do not match their fingerprint")
        if set(report.by_version) - {to_version}:
            raise CommandError("some entries are still under another KEK version: run the command again")
        self.stdout.write(self.style.SUCCESS("Every secret decrypts under its KEK version."))
