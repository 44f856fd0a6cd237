from django.core.management.base import BaseCommand, CommandError, CommandParser

from addresses import hd, services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = "Derive new hot wallet addresses of a business pool (wallet_type) from the chain's hot seed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True, choices=hd.CHAINS)
        parser.add_argument("--wallet-type", default="default")
        parser.add_argument("--count", type=int, default=1)

    def handle(self, *args: object, **options: object) -> None:
        try:
            self._handle(options)
        except WalletError as exc:
            raise CommandError(exc.message) from None

    def _handle(self, options: dict) -> None:
        rows = services.hot_addresses_create(
            chain_id=options["chain"], wallet_type=options["wallet_type"], count=options["count"]
        )
        for row in rows:
            self.stdout.write(f"{row.address} {row.derivation_path}")
