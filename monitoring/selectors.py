"""Reads of alerts (may come from the read replica)."""

from django.db.models import QuerySet

from monitoring.models import Alert


def alert_list_open(*, kind: str | None = None) -> QuerySet[Alert]:
    alerts = Alert.objects.filter(acknowledged_at__isnull=True)
    if kind is not None:
        alerts = alerts.filter(kind=kind)
    return alerts.order_by("-severity", "-last_seen", "-id")
