from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from addresses import selectors as addresses_selectors
from treasury import thresholds
from wallet_project.errors import WalletError


def _amount(text: str | None) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise CommandError(f"{text!r} is not a decimal amount.") from None


class Command(BaseCommand):
    help = "Propose a hot address's min/max balance of one coin (applied when a second operator approves it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True)
        parser.add_argument("--address", required=True)
        parser.add_argument("--coin", required=True)
        parser.add_argument("--min", default="", help="empty: no minimum")
        parser.add_argument("--max", default="", help="empty: no maximum")
        parser.add_argument("--by", required=True, help="username of the proposing operator")
        parser.add_argument("--reason", required=True)

    def handle(self, *args: object, **options: object) -> None:
        user = get_user_model().objects.filter(username=options["by"], is_staff=True).first()
        if user is None:
            raise CommandError(f"No staff user {options['by']!r}.")
        try:
            row = addresses_selectors.address_find(chain_id=options["chain"], address=options["address"])
            if row is None:
                raise CommandError(f"{options['address']} is not an address of the wallet.")
            change = thresholds.threshold_propose(
                address_id=row.id,
                coin_id=options["coin"],
                min_balance=_amount(options["min"]),
                max_balance=_amount(options["max"]),
                user=user,
                reason=options["reason"],
            )
        except WalletError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Proposal #{change.pk}: {change.summary}. It applies when a second operator approves it.")
