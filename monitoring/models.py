"""Alerts raised by every app: deduplicated while open, acknowledged by a person."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from wallet_project.db import ExactCharField


class Severity(models.IntegerChoices):
    INFO = 1, "info"
    WARNING = 2, "warning"
    CRITICAL = 3, "critical"


class Alert(models.Model):
    severity = models.SmallIntegerField(choices=Severity.choices)
    kind = models.CharField(max_length=64, help_text="What happened, e.g. NODE_DOWN, DEEP_REORG.")
    subject = models.CharField(max_length=128, help_text="What it happened to, e.g. chain ETH or coin BTC.")
    message = models.TextField()
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    count = models.PositiveIntegerField(default=1)
    # Open while unacknowledged. open_key is (kind, subject) for an open alert and NULL once
    # acknowledged, so the unique index allows one open alert per kind and subject.
    open_key = ExactCharField(max_length=200, null=True, blank=True, unique=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledge_remark = models.CharField(max_length=500, blank=True, default="", help_text="Why it was closed.")

    class Meta:
        db_table = "monitoring_alert"
        permissions = [("acknowledge_alert", "Can acknowledge (close) an alert")]
        indexes = [models.Index(fields=["kind", "subject"], name="idx_alert_kind_subject")]

    def __str__(self) -> str:
        return f"{self.get_severity_display()} {self.kind} {self.subject}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None
