"""manage.py relay_events: publish the event outbox to the broker (long-running, or --once)."""

from __future__ import annotations

import json
import signal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from assets.relay import runner


class Command(BaseCommand):
    help = "Publish pending outbox events to the broker with confirms, in per-user order. Run several for scale."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Relay what is pending now, then exit.")
        parser.add_argument("--max-seconds", type=float, default=300.0, help="Time limit of --once.")
        parser.add_argument("--batch-size", type=int, help="Events per batch (EVENT_RELAY_BATCH_SIZE).")
        parser.add_argument("--metrics-port", type=int, help="Serve this process's Prometheus metrics on the port.")
        parser.add_argument("--metrics-addr", default="127.0.0.1", help="Address of the metrics server.")
        # Fault injection for the crash test: SIGKILL after the broker's confirm, before mark-sent.
        parser.add_argument("--crash-after-confirm", action="store_true", help="Testing only: die mid-batch.")

    def handle(self, *args: Any, **options: Any) -> None:
        from assets.relay import metrics  # registers the metrics of this process

        config = runner.relay_config_from_settings(
            batch_size=options["batch_size"], crash_after_confirm=options["crash_after_confirm"] or None
        )
        relay = runner.Relay(config=config)
        if options["metrics_port"] is not None:
            from prometheus_client import start_http_server

            start_http_server(options["metrics_port"], addr=options["metrics_addr"])
        del metrics

        def stop(signum: int, frame: object) -> None:
            relay.stop_event.set()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if options["once"]:
            result = relay.run_pass(max_seconds=options["max_seconds"])
            self.stdout.write(
                json.dumps(
                    {
                        "published": result.published,
                        "batches": result.batches,
                        "failures": result.failures,
                        "partitions": result.partitions,
                    }
                )
            )
        else:
            relay.run_forever()
