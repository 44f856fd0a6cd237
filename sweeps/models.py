"""
sweep_job: one move of a coin from deposit addresses into a hot address, with its own states.

A job of an account chain (ETH, TRON) empties one deposit address of one coin; a token job first
tops the address's gas (ETH) or energy and bandwidth (TRX) up from a gas-station hot address. A
BTC job consolidates many deposit outputs (locked in btc_utxo by the job's number) into one
transaction. Every transaction of a job is stored signed before any node sees it, and only what
is stored is ever sent; the job's state says what comes next.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from addresses.models import WalletAddress
from coins.models import AMOUNT, CoinConfig


class SweepStatus(models.TextChoices):
    # Found by the planner: nothing signed yet.
    PLANNED = "PLANNED", "planned"
    # The gas top-up is signed and stored (sent after the commit, again on every run until mined).
    TOPUP_SENT = "TOPUP_SENT", "gas top-up sent"
    TOPUP_MINED = "TOPUP_MINED", "gas top-up mined"
    # The sweep transaction is signed and stored; no node has taken it yet.
    SIGNED = "SIGNED", "signed"
    BROADCAST = "BROADCAST", "broadcast"
    CONFIRMED = "CONFIRMED", "confirmed"
    FAILED = "FAILED", "failed"
    # Nothing was sent: the address held less than it costs to sweep, or nothing at all.
    SKIPPED = "SKIPPED", "skipped (left to grow)"


OPEN_STATUSES = (
    SweepStatus.PLANNED,
    SweepStatus.TOPUP_SENT,
    SweepStatus.TOPUP_MINED,
    SweepStatus.SIGNED,
    SweepStatus.BROADCAST,
)


class SweepJob(models.Model):
    job_no = models.CharField(max_length=40, unique=True)
    chain_id = models.CharField(max_length=32)
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    # The deposit address emptied (account chains); NULL for a BTC consolidation of many addresses.
    address = models.ForeignKey(WalletAddress, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    from_address = models.CharField(max_length=255, blank=True, default="")
    to_address = models.CharField(max_length=255, help_text="The hot address it sweeps into.")
    status = models.CharField(max_length=16, choices=SweepStatus.choices, default=SweepStatus.PLANNED)
    reason = models.CharField(max_length=500, blank=True, default="", help_text="Why it failed or was skipped.")
    # The planner's estimate: credited deposits not yet swept (account chains), then what was signed.
    planned_amount = models.DecimalField(**AMOUNT, default=0)
    amount = models.DecimalField(**AMOUNT, null=True, blank=True, help_text="What the sweep transaction moves.")
    # Credited deposit total of (address, coin) when planned: the next plan counts only what came since.
    credited_mark = models.DecimalField(**AMOUNT, default=0)
    inputs = models.IntegerField(default=0, help_text="BTC: deposit outputs consolidated.")
    # The gas top-up (token sweeps): from the gas station to the deposit address.
    topup_from = models.CharField(max_length=255, blank=True, default="")
    topup_amount = models.DecimalField(**AMOUNT, null=True, blank=True)
    topup_tx_hash = models.CharField(max_length=128, null=True, blank=True, unique=True)
    topup_raw = models.TextField(blank=True, default="")
    topup_nonce = models.BigIntegerField(null=True, blank=True)
    topup_block = models.BigIntegerField(null=True, blank=True)
    topup_fee = models.DecimalField(**AMOUNT, null=True, blank=True, help_text="Network fee of the top-up (receipt).")
    # The fee terms the top-up was sized for; the sweep transaction never offers more per gas.
    gas_limit = models.BigIntegerField(null=True, blank=True)
    max_fee_per_gas = models.BigIntegerField(null=True, blank=True)
    max_priority_fee_per_gas = models.BigIntegerField(null=True, blank=True)
    fee_limit = models.BigIntegerField(null=True, blank=True, help_text="TRON: the sweep call's fee_limit (sun).")
    # The sweep transaction.
    tx_hash = models.CharField(max_length=128, null=True, blank=True, unique=True)
    raw = models.TextField(blank=True, default="")
    nonce = models.BigIntegerField(null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=128, null=True, blank=True)
    fee = models.DecimalField(**AMOUNT, null=True, blank=True, help_text="Network fee of the sweep (receipt).")
    attempts = models.IntegerField(default=0, help_text="Runs that could not move it on (node down, fees high).")
    # chain|address while the job is open, NULL once settled: one open job per deposit address
    # (its nonce and its balance are the job's), and one open BTC consolidation per chain.
    open_key = models.CharField(max_length=300, null=True, blank=True, unique=True)
    retried_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    create_time = models.DateTimeField()
    update_time = models.DateTimeField()
    signed_at = models.DateTimeField(null=True, blank=True)
    broadcast_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "sweep_job"
        verbose_name = "sweep"
        verbose_name_plural = "sweeps"
        permissions = [
            ("retry_sweepjob", "Can retry a failed sweep"),
            ("pause_sweeps", "Can pause and resume the sweeps of a coin"),
        ]
        indexes = [
            models.Index(fields=["chain_id", "status"], name="idx_sweep_job_chain_status"),
        ]

    def __str__(self) -> str:
        return f"{self.job_no} {self.coin_id} {self.status}"


class SweepPause(models.Model):
    """A coin whose sweeps are paused by ops: none is planned or signed; sent ones are followed to the end."""

    coin = models.OneToOneField(
        CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id", related_name="+"
    )
    paused = models.BooleanField(default=True)
    remark = models.CharField(max_length=500)
    changed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    update_time = models.DateTimeField()

    class Meta:
        db_table = "sweep_pause"
        verbose_name = "sweep pause"
        verbose_name_plural = "sweep pauses"

    def __str__(self) -> str:
        return f"{self.coin_id}: {'paused' if self.paused else 'running'}"


class SweepOpsLog(models.Model):
    """Every pause, resume and retry by ops: who, when, why. Append-only."""

    action = models.CharField(max_length=16)  # pause, resume, retry
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    job = models.ForeignKey(SweepJob, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    remark = models.CharField(max_length=500)
    create_time = models.DateTimeField()

    class Meta:
        db_table = "sweep_ops_log"
        verbose_name = "sweep ops action"
        verbose_name_plural = "sweep ops log"
        constraints = [models.CheckConstraint(condition=~models.Q(remark=""), name="sweep_ops_log_remark")]

    def __str__(self) -> str:
        return f"{self.action} {self.coin_id}"
