"""Rebuild the exchange's UTXO set from the chain, or check that it equals the chain."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from chains.base import ChainError
from recharges.services import CursorMoved
from recharges.utxo_rebuild import utxo_set_rebuild
from utxos.services import SetMoved
from wallet_project.errors import WalletError

ATTEMPTS = 3


class Command(BaseCommand):
    help = (
        "Replay the blocks from --from-height to the scanner's height and compare the UTXO set with them; "
        "without --check, repair what differs. Exits 1 when --check finds a difference."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--chain", default="BTC")
        parser.add_argument("--from-height", dest="from_height", type=int, required=True)
        parser.add_argument("--check", action="store_true", help="compare only; write nothing")

    def handle(self, *args: object, **options: object) -> None:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                report = utxo_set_rebuild(
                    chain_id=str(options["chain"]),
                    from_height=int(options["from_height"]),
                    apply=not options["check"],
                )
                break
            except (CursorMoved, SetMoved):
                if attempt == ATTEMPTS:
                    raise CommandError("the scanner kept writing while the blocks were read; run it again") from None
            except (WalletError, ChainError) as exc:
                raise CommandError(str(exc)) from None
        self.stdout.write(report.summary())
        if options["check"] and not report.identical:
            raise CommandError("the UTXO set differs from the chain (run without --check to repair it)")
