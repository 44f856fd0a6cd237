"""Every periodic task of the service, registered in django-celery-beat's tables (idempotent)."""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from coins import selectors as coins_selectors


def schedules() -> list[tuple[str, str, int, dict[str, object]]]:
    """(name, task, every N seconds, kwargs) of every periodic task."""
    every = settings.SCAN_INTERVAL_SECONDS
    entries: list[tuple[str, str, int, dict[str, object]]] = []
    for chain_id in settings.SCAN_CHAINS:
        # The seed's 30-second deposit monitor, per chain: one chain's failure never delays another.
        entries.append((f"deposits-scan-{chain_id}", "recharges.tasks.deposits_scan", every, {"chain_id": chain_id}))
        entries.append(
            (f"deposits-confirm-{chain_id}", "recharges.tasks.deposits_confirm", every, {"chain_id": chain_id})
        )
    # Other apps' periodic tasks, so that one command sets up the whole beat.
    for chain_id in settings.WITHDRAW_ONCHAIN_CHAINS:
        entries.append(
            (f"withdrawals-pay-{chain_id}", "withdrawals.tasks.withdrawals_pay", every, {"chain_id": chain_id})
        )
        entries.append(
            (f"withdrawals-confirm-{chain_id}", "withdrawals.tasks.withdrawals_confirm", every, {"chain_id": chain_id})
        )
    for chain_id in settings.TREASURY_CHAINS:
        entries.append(
            (
                f"treasury-run-{chain_id}",
                "treasury.tasks.treasury_run",
                settings.TREASURY_INTERVAL_SECONDS,
                {"chain_id": chain_id},
            )
        )
    for chain_id in settings.SWEEP_CHAINS:
        entries.append(
            (
                f"sweeps-run-{chain_id}",
                "sweeps.tasks.sweeps_run",
                settings.SWEEP_INTERVAL_SECONDS,
                {"chain_id": chain_id},
            )
        )
    pool_every = getattr(settings, "ADDRESS_POOL_TOP_UP_SECONDS", 300)
    entries.append(("address-pool-top-up", "addresses.tasks.address_pool_top_up", pool_every, {}))
    entries.append(("events-lag-check", "assets.tasks.events_lag_check", 60, {}))
    entries.append(("monitoring-check", "monitoring.tasks.monitoring_check", settings.MONITORING_CHECK_SECONDS, {}))
    entries.append(("alerts-deliver", "monitoring.tasks.alerts_deliver", settings.ALERT_DELIVERY_INTERVAL_SECONDS, {}))
    entries.append(
        ("hot-balances-refresh", "monitoring.tasks.hot_balances_refresh", settings.HOT_BALANCE_REFRESH_SECONDS, {})
    )
    entries.append(("events-prune", "assets.tasks.events_prune", 3600, {}))
    # Reconciliation, per coin: one coin's node failing never delays another's check.
    for coin_id in coins_selectors.coin_list(enabled_only=False).order_by("coin_id").values_list("coin_id", flat=True):
        entries.append(
            (
                f"reconcile-{coin_id}",
                "monitoring.tasks.reconcile",
                settings.RECONCILE_INTERVAL_SECONDS,
                {"coin_id": coin_id},
            )
        )
    return entries


class Command(BaseCommand):
    help = "Create or update the beat schedules of every periodic task (deposit scanners per chain, ...)."

    def handle(self, *args: object, **options: object) -> None:
        with transaction.atomic(durable=True):
            for name, task, seconds, kwargs in schedules():
                interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
                PeriodicTask.objects.update_or_create(
                    name=name,
                    defaults={"task": task, "interval": interval, "kwargs": json.dumps(kwargs), "enabled": True},
                )
                self.stdout.write(f"{name}: {task} every {seconds}s {kwargs}")
