"""
Business metrics on /metrics, computed from the database at scrape time (seed 7.1).

Each scrape runs a few indexed queries: deposits and withdrawals of the last METRICS_WINDOW_SECONDS
(by their create_time index), the review queue and alerts (status / open_key indexes), scanner
cursors and hot balance readings (one row per chain / address). Nothing is counted in a process's
memory, so the web process shows what the workers did, and a restart loses nothing.

Deposit and withdrawal latencies are gauge histograms over the window: use
`histogram_quantile(0.95, wallet_deposit_confirm_seconds_bucket)` directly, without rate().
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoring import selectors as monitoring_selectors
from monitoring.models import BackupKind, Channel, DeliveryStatus, Severity
from recharges import selectors as recharges_selectors
from recharges.models import RechargeStatus
from wallet_project.stats import LatencyHistogram
from withdrawals import selectors as withdrawals_selectors
from withdrawals.models import WithdrawStatus

logger = logging.getLogger(__name__)

# Seconds: deposits wait for confirmations (minutes on ETH/TRON, an hour on BTC); withdrawals may
# wait for an auditor.
LATENCY_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0)

DEPOSIT_SETTLED_BAD = (RechargeStatus.REORGED, RechargeStatus.FAILED)


def _histogram(name: str, documentation: str, histogram: LatencyHistogram) -> GaugeHistogramMetricFamily:
    buckets = [(str(bound), count) for bound, count in zip(histogram.bounds, histogram.cumulative, strict=True)]
    buckets.append(("+Inf", histogram.count))
    return GaugeHistogramMetricFamily(name, documentation, buckets=buckets, gsum_value=histogram.sum_seconds)


def _label(choices: type, value: int) -> str:
    return choices(value).name.lower()


class BusinessCollector(Collector):
    """Deposits, withdrawals, review queue, scanners, hot balances, alerts, payouts, backups."""

    def describe(self) -> Iterator[Metric]:
        # Registration asks for the names; answering nothing here keeps it from querying the database.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(self._metrics())
        except Exception:  # a scrape must still show the other collectors' figures
            logger.warning("business metrics not available for /metrics", exc_info=True)
            return
        yield from metrics

    def _metrics(self) -> Iterator[Metric]:
        now = timezone.now()
        since = now - timedelta(seconds=settings.METRICS_WINDOW_SECONDS)
        yield from self._deposits(since)
        yield from self._withdrawals(since, now)
        yield from self._chains(now)
        yield from self._hot_balances(now)
        yield from self._alerts()
        yield from self._backups()

    def _deposits(self, since) -> Iterator[Metric]:
        outcomes = recharges_selectors.deposit_window_outcomes(since=since)
        by_status = GaugeMetricFamily(
            "wallet_deposits", "Deposits first seen in the window, by status.", labels=["status"]
        )
        for status in RechargeStatus:
            by_status.add_metric([_label(RechargeStatus, status)], outcomes.get(status, 0))
        yield by_status
        good = outcomes.get(RechargeStatus.CONFIRMED, 0)
        settled = good + sum(outcomes.get(status, 0) for status in DEPOSIT_SETTLED_BAD)
        yield GaugeMetricFamily(
            "wallet_deposit_success_ratio",
            "Credited / (credited + orphaned + failed) of the window's deposits (1 when none settled).",
            value=good / settled if settled else 1.0,
        )
        yield _histogram(
            "wallet_deposit_confirm_seconds",
            "First seen to credited, of the deposits first seen in the window.",
            recharges_selectors.deposit_confirm_latency(since=since, bounds=LATENCY_BUCKETS),
        )

    def _withdrawals(self, since, now) -> Iterator[Metric]:
        outcomes = withdrawals_selectors.withdrawal_window_outcomes(since=since)
        by_status = GaugeMetricFamily(
            "wallet_withdrawals", "Withdrawals applied for in the window, by status.", labels=["status"]
        )
        payouts = GaugeMetricFamily(
            "wallet_payouts",
            "On-chain withdrawals (payouts) applied for in the window, by chain and status.",
            labels=["chain", "status"],
        )
        totals: dict[int, int] = {}
        chains = {chain for chain, _, _ in outcomes} | set(settings.WITHDRAW_ONCHAIN_CHAINS)
        for (_chain, _on_chain, status), count in outcomes.items():
            totals[status] = totals.get(status, 0) + count
        for status in WithdrawStatus:
            by_status.add_metric([_label(WithdrawStatus, status)], totals.get(status, 0))
        for chain in sorted(chains):
            for status in (WithdrawStatus.PROCESSING, WithdrawStatus.COMPLETED, WithdrawStatus.FAILED):
                payouts.add_metric([chain, _label(WithdrawStatus, status)], outcomes.get((chain, True, status), 0))
        yield by_status
        yield payouts
        # Sweeps (deposit addresses → hot) are not built yet: the series exists, at zero.
        yield GaugeMetricFamily("wallet_sweeps", "Sweeps started in the window (not built yet: 0).", value=0)
        completed, failed = totals.get(WithdrawStatus.COMPLETED, 0), totals.get(WithdrawStatus.FAILED, 0)
        yield GaugeMetricFamily(
            "wallet_withdrawal_success_ratio",
            "Completed / (completed + failed on chain) of the window's withdrawals (1 when none finished).",
            value=completed / (completed + failed) if completed + failed else 1.0,
        )
        yield _histogram(
            "wallet_withdrawal_processing_seconds",
            "Applied for to completed, of the withdrawals applied for in the window.",
            withdrawals_selectors.withdrawal_processing_latency(since=since, bounds=LATENCY_BUCKETS),
        )
        queue = withdrawals_selectors.review_queue(sample=1)
        yield GaugeMetricFamily(
            "wallet_withdraw_review_queue_size", "Withdrawals waiting for an auditor.", value=queue.size
        )
        age = (now - queue.oldest_applied_at).total_seconds() if queue.oldest_applied_at else 0.0
        yield GaugeMetricFamily(
            "wallet_withdraw_review_oldest_age_seconds",
            "How long the oldest withdrawal has waited for review.",
            value=age,
        )

    def _chains(self, now) -> Iterator[Metric]:
        lag = GaugeMetricFamily("wallet_scanner_lag_blocks", "Node tip minus the scanner's height.", labels=["chain"])
        tip = GaugeMetricFamily(
            "wallet_chain_tip_height", "The node's tip as the scanner last read it.", labels=["chain"]
        )
        read_age = GaugeMetricFamily(
            "wallet_chain_tip_read_age_seconds", "Time since the scanner last read the node's tip.", labels=["chain"]
        )
        for cursor in recharges_selectors.scan_cursor_list():
            if cursor.tip_height < 0:
                continue
            lag.add_metric([cursor.chain_id], max(cursor.tip_height - cursor.height, 0))
            tip.add_metric([cursor.chain_id], cursor.tip_height)
            if cursor.tip_time is not None:
                read_age.add_metric([cursor.chain_id], max((now - cursor.tip_time).total_seconds(), 0.0))
        yield from (lag, tip, read_age)

    def _hot_balances(self, now) -> Iterator[Metric]:
        balance = GaugeMetricFamily(
            "wallet_hot_balance",
            "A hot address's balance as its node last answered.",
            labels=["chain", "coin", "address"],
        )
        age = GaugeMetricFamily(
            "wallet_hot_balance_read_age_seconds",
            "Time since the balance was last read.",
            labels=["chain", "coin", "address"],
        )
        for reading in monitoring_selectors.hot_balance_list():
            labels = [reading.chain_id, reading.coin_id, reading.address]
            if reading.balance is not None:
                # A gauge is a float: fine for a dashboard; the ledger keeps the exact figures.
                balance.add_metric(labels, float(reading.balance))
            age.add_metric(labels, max((now - reading.read_at).total_seconds(), 0.0))
        yield from (balance, age)

    def _alerts(self) -> Iterator[Metric]:
        open_alerts = GaugeMetricFamily(
            "wallet_alerts_open", "Alerts neither acknowledged nor resolved, by severity.", labels=["severity"]
        )
        counts = monitoring_selectors.alerts_open_by_severity()
        for severity in Severity:
            open_alerts.add_metric([severity.label], counts.get(severity, 0))
        yield open_alerts
        deliveries = GaugeMetricFamily(
            "wallet_alert_deliveries",
            "Alert deliveries waiting or given up, by status and channel.",
            labels=["status", "channel"],
        )
        by_status = monitoring_selectors.deliveries_by_status()
        for status in (DeliveryStatus.PENDING, DeliveryStatus.FAILED):
            for channel in Channel:
                deliveries.add_metric([status.lower(), channel.lower()], by_status.get((status, channel), 0))
        yield deliveries

    def _backups(self) -> Iterator[Metric]:
        last = GaugeMetricFamily(
            "wallet_backup_last_success_timestamp_seconds",
            "When the last backup of each kind finished (0: never).",
            labels=["kind"],
        )
        finished = monitoring_selectors.backup_last_finished()
        for kind in BackupKind:
            when = finished.get(kind)
            last.add_metric([kind.lower()], when.timestamp() if when else 0.0)
        yield last


_COLLECTOR = BusinessCollector()


def register() -> None:
    """Put the business collector on this process's registry (once)."""
    try:
        REGISTRY.register(_COLLECTOR)
    except ValueError:
        pass  # registered already (the app registry was populated again)
