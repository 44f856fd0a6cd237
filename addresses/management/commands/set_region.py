from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from addresses import selectors, services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = "Tag a hot address with the region it serves, or record the region a user is served from (3.1.2)."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--hot-address", help="a hot address (with --chain)")
        target.add_argument("--user", help="a username")
        parser.add_argument("--chain")
        parser.add_argument("--region", required=True, help='e.g. "eu"; "" removes the tag')

    def handle(self, *args: object, **options: object) -> None:
        try:
            if options["user"]:
                user = get_user_model().objects.filter(username=options["user"]).first()
                if user is None:
                    raise CommandError(f"No user {options['user']!r}.")
                services.user_region_set(user_id=user.pk, region=options["region"])
                self.stdout.write(f"User {user.get_username()}: region {options['region'] or 'none'}.")
                return
            if not options["chain"]:
                raise CommandError("--hot-address needs --chain.")
            row = selectors.address_find(chain_id=options["chain"], address=options["hot_address"])
            if row is None:
                raise CommandError(f"{options['hot_address']} is not an address of the wallet.")
            services.hot_address_region_set(address_id=row.id, region=options["region"])
            self.stdout.write(f"Hot address {row.address}: region {options['region'] or 'none'}.")
        except WalletError as exc:
            raise CommandError(exc.message) from None
