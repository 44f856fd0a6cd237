from django.core.management.base import BaseCommand, CommandError, CommandParser

from addresses import hd, services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = "Record a cold wallet address (watch-only: the wallet holds no key for it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True, choices=hd.CHAINS)
        parser.add_argument("--address", required=True)
        parser.add_argument("--wallet-type", default="default")

    def handle(self, *args: object, **options: object) -> None:
        try:
            self._handle(options)
        except WalletError as exc:
            raise CommandError(exc.message) from None

    def _handle(self, options: dict) -> None:
        row = services.cold_address_add(
            chain_id=options["chain"], address=options["address"], wallet_type=options["wallet_type"]
        )
        self.stdout.write(f"Cold address {row.address} recorded (watch-only).")
