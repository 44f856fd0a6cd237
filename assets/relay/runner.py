"""
The relay loop: lease partitions, read their pending events, publish them with confirms, mark them sent.

Order: a user's events all belong to one partition, a partition has one owner at a time, and its
owner publishes the partition's pending rows in id order on one channel, waiting for the batch's
confirms before the next batch. After a failure nothing beyond the confirmed prefix is marked, and
the next attempt starts again from the oldest pending row, so a consumer that skips message_ids it
has seen sees each user's events once and in order.

Delivery is at-least-once: a crash between the broker's confirm and the UPDATE that marks the rows
sent publishes those rows again.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field

from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from assets.relay import brokers, metrics
from assets.relay import selectors as relay_selectors
from assets.relay import services as relay_services
from monitoring import services as monitoring_services
from monitoring.models import Severity

logger = logging.getLogger(__name__)


@dataclass
class RelayConfig:
    broker_url: str
    exchange_prefix: str = ""
    partition_count: int = 16
    batch_size: int = 500
    lease_seconds: float = 30.0
    confirm_timeout_seconds: float = 5.0
    idle_seconds: float = 0.2
    lag_alert_seconds: float = 60.0
    lag_check_seconds: float = 30.0
    # Fault injection for the crash test only: SIGKILL this process after the broker confirmed a
    # batch and before the rows are marked sent.
    crash_after_confirm: bool = False


@dataclass
class PassResult:
    published: int = 0
    batches: int = 0
    failures: int = 0
    partitions: list[int] = field(default_factory=list)


def relay_owner_name() -> str:
    """Return a unique name for this relay process: host, pid and a random suffix."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Relay:
    """One relay process (or one Celery pass): owns some partitions and publishes their events."""

    def __init__(self, *, config: RelayConfig, owner: str | None = None) -> None:
        if config.lease_seconds < 3 * config.confirm_timeout_seconds:
            raise ValueError("the lease must last at least 3 confirm timeouts: a batch must end before its lease")
        self.config = config
        self.owner = owner or relay_owner_name()
        self.broker = brokers.broker_for_url(
            url=config.broker_url, prefix=config.exchange_prefix, connection_name=f"event-relay {self.owner}"
        )
        self.stop_event = threading.Event()
        self._partitions: list[int] = []
        self._lease_valid_until = 0.0  # monotonic clock
        self._next_refresh = 0.0
        self._next_lag_check = 0.0
        self._backoff = 0.0
        self._in_flight: tuple[brokers.PendingBatch, float] | None = None

    # -- leases -------------------------------------------------------------------------------

    def _refresh_leases(self, *, force: bool = False) -> None:
        started = time.monotonic()
        if not force and started < self._next_refresh:
            return
        try:
            self._partitions = relay_services.relay_leases_refresh(
                owner=self.owner,
                partition_count=self.config.partition_count,
                lease_seconds=self.config.lease_seconds,
                now=timezone.now(),
            )
        except DatabaseError:
            # A deadlock or a lost connection: the leases held stay valid until _lease_valid_until,
            # so the batch in flight is settled normally; after that nothing new is published.
            logger.warning("relay %s: lease refresh failed; retrying", self.owner)
            close_old_connections()
            self._next_refresh = started + 0.2
            if started >= self._lease_valid_until:
                self._partitions = []
            return
        # A batch must finish well before the lease ends, or another relay may take the partition
        # while this one is still publishing it: keep a margin of the confirm timeout plus a bit.
        self._lease_valid_until = started + self.config.lease_seconds - self.config.confirm_timeout_seconds - 1.0
        self._next_refresh = started + max(0.5, self.config.lease_seconds / 5)

    def release(self) -> None:
        """Settle the batch in flight, give back the leases (clean shutdown), close the broker connection."""
        try:
            self.drain()
        except (brokers.PublishFailed, DatabaseError):
            logger.warning("relay %s: the last batch was not confirmed; it stays pending", self.owner)
        try:
            relay_services.relay_leases_release(owner=self.owner, now=timezone.now())
        except DatabaseError:
            logger.warning("relay %s could not release its leases; they expire on their own", self.owner)
        self.broker.close()

    # -- one batch ----------------------------------------------------------------------------

    def run_batch(self) -> int:
        """
        Publish the next batch of the owned partitions, then settle the previous one; return the
        number of events marked sent by this call.

        The batch published here is awaited by the next call (or by drain()), so that the broker
        confirms one batch while the relay reads and publishes the next: both are on one channel,
        in id order, and a failure marks only the confirmed prefix of the older batch.
        """
        settled = 0
        now = time.monotonic()
        if now >= self._next_refresh or now >= self._lease_valid_until:
            # Leases change hands only with nothing in flight: a partition given up while its batch
            # awaits confirms would be published again, and out of order, by its next owner.
            settled = self.drain()
            self._refresh_leases(force=True)
        previous, self._in_flight = self._in_flight, None
        batch: list[brokers.OutgoingMessage] = []
        if self._partitions:
            batch = relay_selectors.outbox_pending_batch(
                partitions=self._partitions,
                partition_count=self.config.partition_count,
                limit=self.config.batch_size,
                exclude_ids=[m.outbox_id for m in previous[0].messages] if previous else (),
            )
        started = time.perf_counter()
        current = None
        if batch:
            try:
                current = self.broker.batch_begin_irreversible(messages=batch)
            except brokers.PublishFailed:
                if previous is not None:
                    self._settle(previous)  # raises with the previous batch's confirmed prefix marked
                raise
        sent = self._settle(previous) if previous is not None else 0
        if current is not None:
            self._in_flight = (current, started)
        return settled + sent

    @property
    def busy(self) -> bool:
        """True while a published batch awaits its confirms."""
        return self._in_flight is not None

    def drain(self) -> int:
        """Settle the batch in flight, if any; return the number of events marked sent."""
        previous, self._in_flight = self._in_flight, None
        return self._settle(previous) if previous is not None else 0

    def _settle(self, in_flight: tuple[brokers.PendingBatch, float]) -> int:
        pending, started = in_flight
        batch = pending.messages
        try:
            self.broker.batch_await(batch=pending, timeout=self.config.confirm_timeout_seconds)
        except brokers.PublishFailed as exc:
            metrics.PUBLISH_FAILURES.inc()
            confirmed = batch[: exc.confirmed]
            if confirmed:
                relay_services.outbox_mark_sent(outbox_ids=[m.outbox_id for m in confirmed], now=timezone.now())
                self._count(confirmed)
            raise
        if self.config.crash_after_confirm:
            os.kill(os.getpid(), signal.SIGKILL)
        relay_services.outbox_mark_sent(outbox_ids=[m.outbox_id for m in batch], now=timezone.now())
        self._count(batch)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return len(batch)

    @staticmethod
    def _count(batch: list[brokers.OutgoingMessage]) -> None:
        by_topic: dict[str, int] = {}
        for message in batch:
            by_topic[message.topic] = by_topic.get(message.topic, 0) + 1
        for topic, count in by_topic.items():
            metrics.EVENTS_PUBLISHED.labels(topic=topic).inc(count)

    # -- lag alert ----------------------------------------------------------------------------

    def check_lag(self, *, force: bool = False) -> float | None:
        """Raise an EVENT_RELAY_LAG alert when the oldest pending event is older than the threshold."""
        if not force and time.monotonic() < self._next_lag_check:
            return None
        self._next_lag_check = time.monotonic() + self.config.lag_check_seconds
        return relay_lag_check(threshold_seconds=self.config.lag_alert_seconds)

    # -- loops --------------------------------------------------------------------------------

    def step(self) -> int:
        """Run one batch, absorbing broker and database failures with a growing pause; return events sent."""
        return self._step()[0]

    def _step(self) -> tuple[int, bool]:
        try:
            sent = self.run_batch()
            self._backoff = 0.0
            return sent, True
        except brokers.PublishFailed as exc:
            logger.warning("relay %s: %s (%s); retrying", self.owner, exc, exc.__cause__)
        except DatabaseError:
            logger.exception("relay %s: database error; retrying", self.owner)
            close_old_connections()
        # Whatever was in flight is on a dropped connection or unsettled: it stays pending and is
        # published again, from the oldest pending row, by the next batch.
        self._in_flight = None
        self.broker.close()
        self._backoff = min(10.0, max(0.2, self._backoff * 2))
        self.stop_event.wait(self._backoff)
        return 0, False

    def run_forever(self) -> None:
        """Relay until stop_event is set (SIGTERM/SIGINT in the command), then release the leases."""
        logger.info("relay %s started, broker %s", self.owner, self.config.broker_url.split("@")[-1])
        try:
            while not self.stop_event.is_set():
                sent = self.step()
                try:
                    self.check_lag()
                except DatabaseError:
                    logger.warning("relay %s: lag check failed", self.owner)
                if sent == 0 and not self.busy and self._backoff == 0.0:
                    self.stop_event.wait(self.config.idle_seconds)
        finally:
            self.release()
            logger.info("relay %s stopped", self.owner)

    def run_pass(self, *, max_seconds: float, max_failures: int = 8) -> PassResult:
        """
        Relay until the owned partitions have nothing pending, max_seconds passed or max_failures
        batches in a row failed; release the leases.

        A pass takes the leases it can get: with long-running relays alive it may get few or none.
        """
        result = PassResult()
        deadline = time.monotonic() + max_seconds
        failures_in_a_row = 0
        try:
            while time.monotonic() < deadline and not self.stop_event.is_set():
                sent, ok = self._step()
                if not ok:
                    result.failures += 1
                    failures_in_a_row += 1
                    if failures_in_a_row >= max_failures:
                        break
                    continue
                failures_in_a_row = 0
                if sent == 0 and not self.busy:
                    break
                result.published += sent
                result.batches += 1 if sent else 0
            result.partitions = list(self._partitions)
        finally:
            self.release()
        return result


def relay_lag_check(*, threshold_seconds: float) -> float:
    """Return the relay lag; raise an EVENT_RELAY_LAG alert when it passes threshold_seconds."""
    lag = relay_selectors.outbox_lag_seconds(now=timezone.now())
    if lag > threshold_seconds:
        severity = Severity.CRITICAL if lag > threshold_seconds * 10 else Severity.WARNING
        monitoring_services.alert_raise(
            severity=severity,
            kind="EVENT_RELAY_LAG",
            subject="event_outbox",
            message=f"the oldest pending event is {lag:.0f}s old (threshold {threshold_seconds:.0f}s)",
        )
    return lag


def relay_config_from_settings(**overrides: object) -> RelayConfig:
    """Return the relay configuration of settings.EVENT_*, with overrides (command options)."""
    from django.conf import settings

    config = RelayConfig(
        broker_url=settings.EVENT_BROKER_URL,
        exchange_prefix=settings.EVENT_EXCHANGE_PREFIX,
        partition_count=settings.EVENT_RELAY_PARTITIONS,
        batch_size=settings.EVENT_RELAY_BATCH_SIZE,
        lease_seconds=float(settings.EVENT_RELAY_LEASE_SECONDS),
        confirm_timeout_seconds=float(settings.EVENT_RELAY_CONFIRM_TIMEOUT_SECONDS),
        idle_seconds=settings.EVENT_RELAY_IDLE_MS / 1000,
        lag_alert_seconds=float(settings.RELAY_LAG_ALERT_SECONDS),
    )
    for name, value in overrides.items():
        if value is not None:
            setattr(config, name, value)
    return config
