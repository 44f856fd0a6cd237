"""recharge_record: deposits found on chain, their confirmations and crediting."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import AMOUNT, CoinConfig


class RechargeStatus(models.IntegerChoices):
    PENDING = 1, "pending confirmation"
    CONFIRMED = 2, "confirmed and credited"
    FAILED = 3, "failed"
    REORGED = 4, "orphaned by a reorg"
    BELOW_MINIMUM = 5, "below the minimum: recorded, not credited"
    RECHARGE_DISABLED = 6, "recharge disabled: recorded, not credited"


class RechargeRecord(models.Model):
    recharge_no = models.CharField(max_length=32, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, db_column="user_id")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    coin_name = models.CharField(max_length=50)
    tx_hash = models.CharField(max_length=255)
    # BTC output index, EVM log index (or -1 for a native transfer), TRON contract index.
    # One transaction can pay several deposit addresses, so tx_hash alone is not unique.
    log_index = models.IntegerField(default=-1)
    from_address = models.CharField(max_length=255)
    to_address = models.CharField(max_length=255)
    amount = models.DecimalField(**AMOUNT)
    confirmations = models.IntegerField(default=0)
    required_confirmations = models.IntegerField(default=6)
    status = models.SmallIntegerField(choices=RechargeStatus.choices, default=RechargeStatus.PENDING)
    fee = models.DecimalField(**AMOUNT, default=0)
    block_number = models.BigIntegerField(null=True, blank=True)
    block_hash = models.CharField(max_length=128, null=True, blank=True)
    block_time = models.DateTimeField(null=True, blank=True)
    memo = models.CharField(max_length=255, null=True, blank=True)
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)
    confirm_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "recharge_record"
        constraints = [
            models.UniqueConstraint(fields=["coin", "tx_hash", "log_index"], name="uk_recharge_coin_tx_index"),
        ]
        indexes = [
            models.Index(fields=["user"], name="idx_recharge_user_id"),
            models.Index(fields=["coin"], name="idx_recharge_coin_id"),
            models.Index(fields=["status"], name="idx_recharge_status"),
            models.Index(fields=["create_time"], name="idx_recharge_create_time"),
            models.Index(fields=["tx_hash"], name="idx_recharge_tx_hash"),
        ]

    def __str__(self) -> str:
        return self.recharge_no
