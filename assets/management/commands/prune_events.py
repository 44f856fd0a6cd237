"""manage.py prune_events: delete sent outbox events older than EVENT_RETENTION_DAYS."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from assets.relay import services as relay_services


class Command(BaseCommand):
    help = "Delete sent outbox events older than the retention period; pending events are kept."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Retention in days (EVENT_RETENTION_DAYS).")

    def handle(self, *args: Any, **options: Any) -> None:
        days = options["days"] if options["days"] is not None else settings.EVENT_RETENTION_DAYS
        deleted = relay_services.outbox_prune(now=timezone.now(), retention_days=days)
        self.stdout.write(f"deleted {deleted} sent events older than {days} days")
