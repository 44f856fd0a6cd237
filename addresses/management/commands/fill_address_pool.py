from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from addresses import hd, selectors, services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = (
        "Pre-generate unassigned deposit addresses of a chain from its deposit seed's account xpub, in "
        "batches of one transaction each; an interrupted run keeps its batches and the next continues "
        "after the highest index used."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chain", required=True, choices=hd.CHAINS)
        parser.add_argument("--count", type=int, required=True)
        parser.add_argument("--batch-size", type=int, default=services.POOL_BATCH_ROWS)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: object, **options: object) -> None:
        try:
            self._handle(options)
        except WalletError as exc:
            raise CommandError(exc.message) from None

    def _handle(self, options: dict) -> None:
        chain_id, count = options["chain"], options["count"]
        with tqdm(total=count, unit="addr", disable=options["no_progress"], file=self.stderr) as bar:
            added = services.address_pool_fill(
                chain_id=chain_id, count=count, batch_size=options["batch_size"], progress=bar.update
            )
        available = selectors.address_pool_available(chain_id=chain_id)
        self.stdout.write(self.style.SUCCESS(f"Added {added} {chain_id} deposit addresses; {available} unassigned."))
