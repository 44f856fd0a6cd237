from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from reserves import services as reserves_services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = (
        "Store a cold (watch-only) address's signature of a reserves snapshot's statement, signed "
        "offline by ops: BTC BIP-137 base64, ETH EIP-191 or TRON signMessageV2 hex. Refused unless it verifies."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--snapshot", type=int, required=True)
        parser.add_argument("--address", required=True)
        parser.add_argument("--signature", required=True)
        parser.add_argument("--operator", help="user name of the staff member supplying it (recorded)")

    def handle(self, *args: object, **options: object) -> None:
        operator = None
        if options["operator"]:
            operator = get_user_model().objects.filter(username=options["operator"], is_staff=True).first()
            if operator is None:
                raise CommandError(f"no staff user {options['operator']!r}")
        try:
            row = reserves_services.signature_import(
                snapshot_id=options["snapshot"],
                address=options["address"],
                signature=options["signature"],
                operator=operator,
                now=timezone.now(),
            )
        except WalletError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"signature of {row.address} for snapshot {options['snapshot']} verified and stored")
