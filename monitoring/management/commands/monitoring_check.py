"""Run the monitoring checks once (what the beat task does every MONITORING_CHECK_SECONDS)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from monitoring import checks


class Command(BaseCommand):
    help = "Raise the alerts whose condition holds and resolve the ones that cleared, once."

    def handle(self, *args: object, **options: object) -> None:
        report = checks.monitoring_check()
        self.stdout.write(f"{report.raised} alert(s) raised or repeated, {report.resolved} resolved")
        if report.errors:
            raise CommandError(f"checks failed: {', '.join(report.errors)}")
