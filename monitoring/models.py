"""
Alerts raised by every app (deduplicated while open, resolved when their condition clears), their
deliveries to people, and the state the monitoring checks keep: chain tips seen, hot balances
read from chain, backups made.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import AMOUNT, CoinConfig
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
    # Open while neither acknowledged nor resolved. open_key is (kind, subject) for an open alert
    # and NULL otherwise, so the unique index allows one open alert per kind and subject.
    open_key = ExactCharField(max_length=200, null=True, blank=True, unique=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledge_remark = models.CharField(max_length=500, blank=True, default="", help_text="Why it was closed.")
    # Set when the alert's condition cleared (a check saw it, or a later success proved it).
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_how = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        db_table = "monitoring_alert"
        permissions = [("acknowledge_alert", "Can acknowledge (close) an alert")]
        indexes = [
            models.Index(fields=["kind", "subject"], name="idx_alert_kind_subject"),
            models.Index(fields=["kind", "resolved_at"], name="idx_alert_kind_resolved"),
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display()} {self.kind} {self.subject}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None and self.resolved_at is None


class Channel(models.TextChoices):
    WEBHOOK = "WEBHOOK", "signed webhook"
    EMAIL = "EMAIL", "email"


class DeliveryEvent(models.TextChoices):
    FIRED = "FIRED", "fired"
    ESCALATED = "ESCALATED", "severity raised"
    RESOLVED = "RESOLVED", "resolved"


class DeliveryStatus(models.TextChoices):
    PENDING = "PENDING", "pending (sent by the next run)"
    SENT = "SENT", "sent"
    FAILED = "FAILED", "given up after the last attempt"


class AlertDelivery(models.Model):
    """
    One message about one alert event on one channel: written with the alert, sent by a beat task.

    The row is the truth: a crash before or during sending leaves it PENDING (with a lease in
    next_attempt_at), and the next run sends it. Receivers deduplicate by its id.
    """

    alert = models.ForeignKey(Alert, on_delete=models.PROTECT, related_name="deliveries")
    event = models.CharField(max_length=16, choices=DeliveryEvent.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        db_table = "monitoring_alert_delivery"
        constraints = [
            models.UniqueConstraint(fields=["alert", "event", "channel"], name="uk_alert_delivery_event_channel"),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="idx_alert_delivery_due")]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} of alert {self.alert_id}: {self.status}"


class ChainTip(models.Model):
    """The last tip height the checks saw for a chain, and since when it has not moved."""

    chain_id = models.CharField(max_length=32, unique=True)
    tip_height = models.BigIntegerField()
    changed_at = models.DateTimeField()
    checked_at = models.DateTimeField()

    class Meta:
        db_table = "monitoring_chain_tip"

    def __str__(self) -> str:
        return f"{self.chain_id}@{self.tip_height}"


class HotBalance(models.Model):
    """
    What a hot address holds of one coin, as its chain's node last answered.

    Read by a beat task from the chain adapter (the ledger does not track hot wallets' on-chain
    holdings); NULL balance with an error when the node could not say.
    """

    chain_id = models.CharField(max_length=32)
    address = models.CharField(max_length=255)
    coin_id = models.CharField(max_length=32)
    balance = models.DecimalField(**AMOUNT, null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    read_at = models.DateTimeField()

    class Meta:
        db_table = "monitoring_hot_balance"
        constraints = [
            models.UniqueConstraint(fields=["address", "coin_id"], name="uk_hot_balance_address_coin"),
        ]

    def __str__(self) -> str:
        return f"{self.coin_id} {self.address}: {self.balance}"


class BackupKind(models.TextChoices):
    DATABASE = "DATABASE", "database"
    VAULT = "VAULT", "key vault export"


class BackupRun(models.Model):
    """A backup that finished: where it went and its manifest's checksum (the files are the truth)."""

    kind = models.CharField(max_length=16, choices=BackupKind.choices)
    name = models.CharField(max_length=100)
    location = models.CharField(max_length=500)
    size_bytes = models.BigIntegerField()
    manifest_sha256 = models.CharField(max_length=64)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()

    class Meta:
        db_table = "monitoring_backup_run"
        indexes = [models.Index(fields=["kind", "finished_at"], name="idx_backup_run_kind_finished")]

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


class ReconciliationStatus(models.IntegerChoices):
    BALANCED = 1, "balanced: no difference beyond the tolerance"
    DIFFERENCE = 2, "difference beyond the tolerance: alerted, breaker tripped"
    NOT_RUN = 3, "not run: a node failed or the chain moved while it was read"


class ReconciliationRun(models.Model):
    """
    One reconciliation of one coin (monitoring.reconciliation): the ledger against itself and
    against the chain, with every figure it compared. Written once, never changed.

        difference = (users + house) - (on_chain - inbound + outbound - settled_ahead)

    A positive difference is a shortfall on chain (the ledger owes more than the exchange holds),
    a negative one a surplus.
    """

    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    full = models.BooleanField(default=False, help_text="The ledger check read every flow (else only new ones).")
    status = models.SmallIntegerField(choices=ReconciliationStatus.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    scan_height = models.BigIntegerField(null=True, blank=True, help_text="Where the scanner stood.")
    chain_height = models.BigIntegerField(null=True, blank=True, help_text="The block the balances were read at.")
    block_hash = models.CharField(max_length=128, blank=True, default="")
    users_total = models.DecimalField(**AMOUNT, default=0, help_text="Σ users' available + frozen - debt.")
    house_total = models.DecimalField(**AMOUNT, default=0, help_text="Σ house balances (signed).")
    on_chain = models.DecimalField(**AMOUNT, default=0, help_text="Σ holdings of every exchange address.")
    inbound = models.DecimalField(**AMOUNT, default=0, help_text="On chain, not yet in the ledger.")
    outbound = models.DecimalField(**AMOUNT, default=0, help_text="Left the chain, still in the ledger.")
    settled_ahead = models.DecimalField(**AMOUNT, default=0, help_text="Out of the ledger, on chain at the height.")
    difference = models.DecimalField(**AMOUNT, default=0)
    tolerance = models.DecimalField(**AMOUNT, default=0)
    flows_checked = models.BigIntegerField(default=0)
    last_flow_id = models.BigIntegerField(default=0, help_text="The highest user flow id the ledger check has seen.")
    ledger_mismatches = models.IntegerField(default=0, help_text="Balance rows (users and house) ≠ Σ their flows.")
    details = models.JSONField(default=dict, help_text="Holdings per kind of address, in-flight items, mismatches.")
    error = models.CharField(max_length=500, blank=True, default="")

    class Meta:
        db_table = "monitoring_reconciliation"
        indexes = [models.Index(fields=["coin", "id"], name="idx_reconciliation_coin")]

    def __str__(self) -> str:
        return f"reconciliation {self.coin_id} #{self.id}"
