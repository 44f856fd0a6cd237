import getpass
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from addresses import hd, signer
from addresses.models import AddressType
from wallet_project.errors import WalletError

PURPOSES = {"deposit": AddressType.USER_DEPOSIT, "hot": AddressType.HOT}


class Command(BaseCommand):
    help = (
        "Create (or with --import, import from standard input) the HD seed of a chain for deposit or hot "
        "addresses and store it encrypted in the key vault. The mnemonic is never printed: a new one is "
        "written only to --backup-file, a new file readable by its owner."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True, choices=hd.CHAINS)
        parser.add_argument("--purpose", choices=sorted(PURPOSES), default="deposit")
        parser.add_argument("--label", default="")
        parser.add_argument(
            "--import",
            dest="import_",
            action="store_true",
            help="read an existing BIP39 mnemonic from standard input (first line) and an optional "
            "passphrase (second line) instead of generating one",
        )
        parser.add_argument("--backup-file", type=Path, help="write a newly generated mnemonic to this new file")

    def handle(self, *args: object, **options: object) -> None:
        try:
            self._handle(options)
        except WalletError as exc:
            raise CommandError(exc.message) from None

    def _handle(self, options: dict) -> None:
        backup: Path | None = options["backup_file"]
        if options["import_"]:
            if backup is not None:
                raise CommandError("--backup-file is for a generated mnemonic; an imported one has its own backup")
            mnemonic, passphrase = self._read_secret()
        else:
            mnemonic, passphrase = signer.mnemonic_generate(), ""
            if backup is not None and backup.exists():
                raise CommandError("the backup file already exists; choose a new path")
        if backup is not None:
            # The backup first: a seed stored without its offline copy could not be made again
            # (the chain has its seed), and the mnemonic would exist only under the KEK.
            try:
                signer.mnemonic_backup_write(path=backup, mnemonic=mnemonic)
            except OSError as exc:
                raise CommandError(f"the backup file cannot be written ({exc.strerror}); nothing was stored") from None
        try:
            secret = signer.hd_wallet_create(
                chain_id=options["chain"],
                purpose=PURPOSES[options["purpose"]],
                mnemonic=mnemonic,
                passphrase=passphrase,
                label=options["label"],
            )
        except BaseException:
            if backup is not None:
                backup.unlink(missing_ok=True)  # the mnemonic of a seed that was never stored
            raise
        if backup is not None:
            self.stdout.write(f"Mnemonic backup written to {backup} (mode 600): move it offline.")
        elif not options["import_"]:
            self.stderr.write("No --backup-file: the seed exists only in the vault, under its KEK.")
        self.stdout.write(
            self.style.SUCCESS(
                f"HD seed stored: vault entry {secret.id}, {secret.chain_id} {options['purpose']}, "
                f"fingerprint {secret.fingerprint}, account {secret.account_path}, KEK version {secret.key_version}"
            )
        )

    def _read_secret(self) -> tuple[str, str]:
        if sys.stdin.isatty():
            return getpass.getpass("Mnemonic: "), getpass.getpass("Passphrase (empty for none): ")
        lines = sys.stdin.read().splitlines()
        if not lines:
            raise CommandError("expected a mnemonic on standard input")
        return lines[0], lines[1] if len(lines) > 1 else ""
