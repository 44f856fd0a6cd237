"""
Prometheus metrics of the relay.

The lag is read from the database at scrape time, so the web process's /metrics (django-prometheus)
shows it even when no relay runs (which is exactly when it matters). Counters and the batch
histogram live in the relay process: `relay_events --metrics-port N` serves them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

EVENTS_PUBLISHED = Counter(
    "wallet_events_published_total", "Outbox events published and confirmed by the broker.", ["topic"]
)
PUBLISH_FAILURES = Counter("wallet_event_relay_publish_failures_total", "Batches the broker did not fully confirm.")
BATCH_SECONDS = Histogram(
    "wallet_event_relay_batch_seconds",
    "Time of one relay batch: read, publish, wait for confirms, mark sent.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class OutboxLagCollector(Collector):
    """wallet_event_relay_lag_seconds: age of the oldest pending outbox event, read at scrape time."""

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registration asks for the names; answering here keeps it from querying the database.
        yield GaugeMetricFamily("wallet_event_relay_lag_seconds", "Age of the oldest pending outbox event.")
        yield GaugeMetricFamily("wallet_event_outbox_pending", "Outbox events not yet sent.")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from assets.relay import selectors as relay_selectors

        try:
            lag = relay_selectors.outbox_lag_seconds(now=timezone.now())
            pending = relay_selectors.outbox_pending_count()
        except Exception:
            logger.warning("outbox lag not available for /metrics")
            return
        yield GaugeMetricFamily(
            "wallet_event_relay_lag_seconds", "Age of the oldest pending outbox event (0 when none).", value=lag
        )
        yield GaugeMetricFamily("wallet_event_outbox_pending", "Outbox events not yet sent.", value=pending)


_LAG_COLLECTOR = OutboxLagCollector()
REGISTRY.register(_LAG_COLLECTOR)
