"""Reconcile coins now (what the beat task reconcile-<COIN> does every RECONCILE_INTERVAL_SECONDS)."""

from __future__ import annotations

from decimal import Decimal

from django.core.management.base import BaseCommand, CommandError

from coins import selectors as coins_selectors
from monitoring import reconciliation
from monitoring.models import ReconciliationStatus


class Command(BaseCommand):
    help = (
        "Reconcile one coin, or every coin: the ledger against itself and against the chain. A difference "
        "alerts and trips the coin's circuit breaker, as the scheduled run does."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--coin", help="the coin to reconcile (default: every coin)")
        parser.add_argument("--full", action="store_true", help="check every flow, not only the new ones")

    def handle(self, *args: object, **options: object) -> None:
        coin_ids = (
            [options["coin"]]
            if options["coin"]
            else list(
                coins_selectors.coin_list(enabled_only=False).order_by("coin_id").values_list("coin_id", flat=True)
            )
        )
        differences = []
        for coin_id in coin_ids:
            run = reconciliation.reconcile_coin(coin_id=str(coin_id), full=True if options["full"] else None)
            status = ReconciliationStatus(run.status)
            difference = Decimal(run.difference).normalize()
            self.stdout.write(
                f"{run.coin_id}: {status.name} difference {difference:f} at height {run.chain_height} "
                f"({run.flows_checked} flows checked, {run.ledger_mismatches} mismatch(es)) run {run.id}"
                + (f": {run.error}" if run.error else "")
            )
            if status == ReconciliationStatus.DIFFERENCE:
                differences.append(run.coin_id)
        if differences:
            raise CommandError(f"difference found: {', '.join(differences)} (alerted, breaker tripped)")
