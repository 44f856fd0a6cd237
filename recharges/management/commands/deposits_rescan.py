"""Read a block range of a chain again and record any deposit missing (idempotent)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from recharges import services as recharges_services


class Command(BaseCommand):
    help = "Rescan blocks FROM..TO of a chain for missed deposits; safe to repeat (the unique key dedups)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chain", required=True, help="BTC, ETH or TRON")
        parser.add_argument("--from", dest="from_height", type=int, required=True)
        parser.add_argument("--to", dest="to_height", type=int, required=True)

    def handle(self, *args: object, **options: object) -> None:
        if options["from_height"] > options["to_height"]:
            raise CommandError("--from must not be above --to")
        result = recharges_services.deposits_rescan_range(
            chain_id=str(options["chain"]),
            from_height=int(options["from_height"]),
            to_height=int(options["to_height"]),
            now=timezone.now(),
        )
        if result.error:
            raise CommandError(f"rescan stopped: {result.error}")
        self.stdout.write(f"{result.chain_id}: {result.blocks} blocks read, {result.deposits} deposits added")
