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
        # A long range is read in pieces of at most RESCAN_MAX_BLOCKS, each as one service call.
        first, last, step = int(options["from_height"]), int(options["to_height"]), recharges_services.RESCAN_MAX_BLOCKS
        blocks = deposits = 0
        for start in range(first, last + 1, step):
            result = recharges_services.deposits_rescan_range(
                chain_id=str(options["chain"]),
                from_height=start,
                to_height=min(start + step - 1, last),
                now=timezone.now(),
            )
            if result.error:
                raise CommandError(f"rescan stopped: {result.error}")
            blocks, deposits = blocks + result.blocks, deposits + result.deposits
        result = recharges_services.ScanResult(chain_id=str(options["chain"]), blocks=blocks, deposits=deposits)
        self.stdout.write(f"{result.chain_id}: {result.blocks} blocks read, {result.deposits} deposits added")
