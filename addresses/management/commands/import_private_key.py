import getpass
import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from addresses import hd, signer
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = (
        "Import a private key (hex, read from standard input, never from the command line) into the key "
        "vault as a hot wallet of a business pool."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True, choices=hd.CHAINS)
        parser.add_argument("--wallet-type", default="default", help="business pool of the hot wallet")
        parser.add_argument("--label", default="")

    def handle(self, *args: object, **options: object) -> None:
        try:
            self._handle(options)
        except WalletError as exc:
            raise CommandError(exc.message) from None

    def _handle(self, options: dict) -> None:
        if sys.stdin.isatty():
            text = getpass.getpass("Private key (hex): ")
        else:
            text = sys.stdin.readline()
        if not text.strip():
            raise CommandError("expected a private key on standard input")
        row = signer.private_key_import(
            chain_id=options["chain"],
            private_key_hex=text,
            wallet_type=options["wallet_type"],
            label=options["label"],
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported: hot address {row.address} ({row.chain_id}, pool {row.wallet_type}), "
                f"vault entry {row.key_secret_id}"
            )
        )
