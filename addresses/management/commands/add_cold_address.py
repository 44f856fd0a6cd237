from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from addresses import hd, services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = "Record a cold wallet address (watch-only: the wallet holds no key for it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True, choices=hd.CHAINS)
        parser.add_argument("--address", required=True)
        parser.add_argument("--wallet-type", default="default")
        parser.add_argument("--by", required=True, help="username of the operator registering it")
        parser.add_argument("--reason", required=True, help="why, and where its key is kept (never the key)")

    def handle(self, *args: object, **options: object) -> None:
        try:
            self._handle(options)
        except WalletError as exc:
            raise CommandError(exc.message) from None

    def _handle(self, options: dict) -> None:
        operator = get_user_model().objects.filter(username=options["by"], is_staff=True).first()
        if operator is None:
            raise CommandError(f"No staff user {options['by']!r}.")
        row = services.cold_address_add(
            chain_id=options["chain"],
            address=options["address"],
            wallet_type=options["wallet_type"],
            operator_id=operator.pk,
            remark=options["reason"],
        )
        self.stdout.write(f"Cold address {row.address} recorded (watch-only).")
