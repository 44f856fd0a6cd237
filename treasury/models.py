"""
The treasury's hot/cold tables: each hot address's balance thresholds per coin, and the treasury
transfers that move a hot address's surplus to a cold (watch-only) address.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from addresses.models import WalletAddress
from coins.models import AMOUNT, CoinConfig
from wallet_project.db import ExactCharField


class HotThreshold(models.Model):
    """
    The seed's min_balance / max_balance of one hot address for one coin.

    Per (address, coin), not on the wallet_address row: one EVM or TRON address holds the chain's
    own coin and its tokens, and each needs its own limits (1 ETH and 500,000 USDT are different
    amounts). NULL: no limit on that side. Changed only through a four-eyes proposal.
    """

    address = models.ForeignKey(WalletAddress, on_delete=models.PROTECT, related_name="+")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    min_balance = models.DecimalField(**AMOUNT, null=True, blank=True)
    max_balance = models.DecimalField(**AMOUNT, null=True, blank=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "treasury_hot_threshold"
        verbose_name = "hot wallet threshold"
        permissions = [("set_hot_threshold", "Can propose and approve a hot address's min/max balance")]
        constraints = [
            models.UniqueConstraint(fields=["address", "coin"], name="uk_hot_threshold_address_coin"),
            models.CheckConstraint(
                condition=models.Q(min_balance__isnull=True)
                | models.Q(max_balance__isnull=True)
                | models.Q(min_balance__lte=models.F("max_balance")),
                name="hot_threshold_min_le_max",
            ),
            models.CheckConstraint(
                condition=(models.Q(min_balance__isnull=True) | models.Q(min_balance__gte=0))
                & (models.Q(max_balance__isnull=True) | models.Q(max_balance__gte=0)),
                name="hot_threshold_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.coin_id} {self.address_id}: {self.min_balance}..{self.max_balance}"


class TransferStatus(models.TextChoices):
    PROPOSED = "PROPOSED", "proposed (waits for ops)"
    APPROVED = "APPROVED", "approved (to be signed)"
    SIGNED = "SIGNED", "signed (stored, to be sent)"
    BROADCAST = "BROADCAST", "broadcast (waits for confirmations)"
    CONFIRMED = "CONFIRMED", "confirmed"
    FAILED = "FAILED", "failed"
    REJECTED = "REJECTED", "rejected by ops"


OPEN_STATUSES = (
    TransferStatus.PROPOSED,
    TransferStatus.APPROVED,
    TransferStatus.SIGNED,
    TransferStatus.BROADCAST,
)


class TreasuryTransfer(models.Model):
    """
    One move of a hot address's surplus of one coin to a cold address: a job with its own states.

    PROPOSED → APPROVED (ops, or at once where TREASURY_AUTO_SEND_COINS says) → SIGNED (the signed
    transaction stored, with its nonce, before any node sees it) → BROADCAST → CONFIRMED, or FAILED
    with the reason; REJECTED by ops. `open_key` is (coin, from address) while the job is open, so
    a hot address has one open transfer per coin at a time.
    """

    transfer_no = ExactCharField(max_length=32, unique=True)
    chain_id = models.CharField(max_length=32)
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    from_address = models.CharField(max_length=255)
    to_address = models.CharField(max_length=255)
    amount = models.DecimalField(**AMOUNT)
    status = models.CharField(max_length=16, choices=TransferStatus.choices)
    open_key = ExactCharField(max_length=300, null=True, blank=True, unique=True)
    # What the planner saw: the hot address's balance and its maximum.
    seen_balance = models.DecimalField(**AMOUNT)
    seen_max_balance = models.DecimalField(**AMOUNT)
    nonce = models.BigIntegerField(null=True, blank=True)
    tx_hash = models.CharField(max_length=128, null=True, blank=True, unique=True)
    raw = models.TextField(blank=True, default="")
    fee_terms = models.JSONField(default=dict, blank=True)
    fee = models.DecimalField(**AMOUNT, null=True, blank=True)
    block_number = models.BigIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True, default="")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    create_time = models.DateTimeField()
    signed_at = models.DateTimeField(null=True, blank=True)
    broadcast_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "treasury_transfer"
        permissions = [("approve_treasurytransfer", "Can approve or reject a treasury transfer to cold")]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="treasury_transfer_amount_positive"),
        ]
        indexes = [models.Index(fields=["chain_id", "status"], name="idx_treasury_transfer_status")]

    def __str__(self) -> str:
        return self.transfer_no


class TreasuryTransferLog(models.Model):
    """Every step of a treasury transfer: who (NULL: the system), when, from which status to which, why."""

    transfer = models.ForeignKey(TreasuryTransfer, on_delete=models.PROTECT, related_name="logs")
    action = models.CharField(max_length=32)
    from_status = models.CharField(max_length=16, blank=True, default="")
    to_status = models.CharField(max_length=16)
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    remark = models.CharField(max_length=500, blank=True, default="")
    create_time = models.DateTimeField()

    class Meta:
        db_table = "treasury_transfer_log"
        indexes = [models.Index(fields=["transfer", "id"], name="idx_treasury_transfer_log")]

    def __str__(self) -> str:
        return f"{self.transfer_id}: {self.action}"
