"""recharge_record: deposits found on chain, their confirmations and crediting."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import AMOUNT, CoinConfig
from wallet_project.db import ExactCharField


class RechargeStatus(models.IntegerChoices):
    PENDING = 1, "pending confirmation"
    CONFIRMED = 2, "confirmed and credited"
    FAILED = 3, "failed"
    REORGED = 4, "orphaned by a reorg"
    BELOW_MINIMUM = 5, "below the minimum: recorded, not credited"
    RECHARGE_DISABLED = 6, "recharge disabled: recorded, not credited"
    ABOVE_MAXIMUM = 7, "above the maximum: recorded, not credited, ops review"


class RechargeRecord(models.Model):
    recharge_no = ExactCharField(max_length=32, unique=True)
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
    # Times this deposit was found again after a reorg orphaned it. Each crediting (and its
    # reversal) is booked under its own reference, so a deposit credited, reversed and then
    # re-mined on the new branch is credited again exactly once.
    generation = models.IntegerField(default=0)
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)
    confirm_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "recharge_record"
        verbose_name = "deposit"
        verbose_name_plural = "deposits"
        permissions = [("release_rechargerecord", "Can credit a held deposit after review")]
        constraints = [
            models.UniqueConstraint(fields=["coin", "tx_hash", "log_index"], name="uk_recharge_coin_tx_index"),
        ]
        indexes = [
            models.Index(fields=["user"], name="idx_recharge_user_id"),
            models.Index(fields=["coin"], name="idx_recharge_coin_id"),
            models.Index(fields=["status"], name="idx_recharge_status"),
            models.Index(fields=["create_time"], name="idx_recharge_create_time"),
            models.Index(fields=["tx_hash"], name="idx_recharge_tx_hash"),
            models.Index(fields=["block_number"], name="idx_recharge_block_number"),
        ]

    def __str__(self) -> str:
        return self.recharge_no

    @property
    def biz_ref(self) -> str:
        """The ledger reference of this crediting (and of its reversal)."""
        return self.recharge_no if self.generation == 0 else f"{self.recharge_no}-g{self.generation}"


class ScanCursor(models.Model):
    """
    Where a chain's scanner stands: the last block it processed, and the node's tip it last saw.

    Scanners advance it by compare-and-set on (height, version), so two scanners never both
    process the same block; a reorg moves it back to the fork point and bumps the version.
    """

    chain_id = models.CharField(max_length=32, unique=True)
    # Height of the last block fully processed (-1: nothing yet).
    height = models.BigIntegerField()
    version = models.BigIntegerField(default=0)
    # The node's best height at the scanner's last tick: confirmations are counted from it.
    tip_height = models.BigIntegerField(default=-1)
    tip_time = models.DateTimeField(null=True, blank=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "recharge_scan_cursor"
        permissions = [("rescan_blocks", "Can rescan blocks for missed deposits")]

    def __str__(self) -> str:
        return f"{self.chain_id}@{self.height}"


class RecentBlock(models.Model):
    """The hash of each of a chain's last N processed blocks, to notice a reorg and find the fork point."""

    chain_id = models.CharField(max_length=32)
    height = models.BigIntegerField()
    hash = models.CharField(max_length=128)
    parent_hash = models.CharField(max_length=128)
    create_time = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "recharge_recent_block"
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "height"], name="uk_recent_block_chain_height"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id}#{self.height}"


class HoldStatus(models.IntegerChoices):
    ACTIVE = 1, "active: debt open, withdrawals held"
    # Closed by the removed "mark resolved" action, which cleared neither a freeze nor a debt.
    RESOLVED = 2, "resolved by ops (before settle and write-off existed)"
    REPAID = 3, "repaid from later credits of the user"
    SETTLED = 4, "settled by ops: the user paid it back off-system"
    WRITTEN_OFF = 5, "written off by ops: the exchange's loss"


# Holds closed by a person: who, when and why must be on the row.
HOLD_CLOSED_BY_OPS = (HoldStatus.SETTLED, HoldStatus.WRITTEN_OFF)


class AccountHold(models.Model):
    """
    A credited deposit was orphaned by a reorg and the user's balance could not cover its reversal.

    What the available balance held was taken back (`reversed_amount`, REORG_REVERSAL) and the
    rest booked as the user's debt in the ledger (`debt_amount`, REORG_DEBT). While the debt of
    the hold's (user, coin) is open the user's withdrawals are held (withdrawals ask
    `recharges.selectors.withdrawals_held`). The hold closes itself (REPAID) when later credits
    repay the debt, or ops close it (SETTLED, WRITTEN_OFF) with `recharges.shortfalls`.
    Holds made before debts were booked have a `frozen_amount` (REORG_FREEZE) and a shortfall
    the ledger never saw (`shortfall` > `debt_amount`); settling or writing them off takes care of both.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, db_column="user_id")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    recharge = models.ForeignKey(RechargeRecord, on_delete=models.PROTECT, related_name="+")
    # The reversal's business reference (one hold per orphaned crediting).
    biz_ref = ExactCharField(max_length=64, unique=True)
    amount = models.DecimalField(**AMOUNT, help_text="The orphaned deposit's amount.")
    reversed_amount = models.DecimalField(
        **AMOUNT, default=0, help_text="What the available balance held: taken back (REORG_REVERSAL)."
    )
    frozen_amount = models.DecimalField(
        **AMOUNT, default=0, help_text="Holds made before debts were booked: what was frozen (REORG_FREEZE)."
    )
    shortfall = models.DecimalField(**AMOUNT, help_text="What the balance could not cover: owed by the user.")
    debt_amount = models.DecimalField(
        **AMOUNT, default=0, help_text="The part of the shortfall booked as the user's debt (REORG_DEBT)."
    )
    reason = models.CharField(max_length=255)
    status = models.SmallIntegerField(choices=HoldStatus.choices, default=HoldStatus.ACTIVE)
    create_time = models.DateTimeField(auto_now_add=True)
    resolve_time = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    resolve_remark = models.CharField(max_length=255, blank=True, default="")
    resolved_amount = models.DecimalField(
        **AMOUNT, default=0, help_text="The debt ops settled or wrote off (the whole debt of the user and coin)."
    )

    class Meta:
        db_table = "recharge_account_hold"
        indexes = [models.Index(fields=["user", "status"], name="idx_account_hold_user_status")]
        permissions = [
            ("settle_accounthold", "Can settle a reorg shortfall the user paid back off-system"),
            ("write_off_accounthold", "Can write off a reorg shortfall as the exchange's loss"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(status__in=HOLD_CLOSED_BY_OPS)
                | (models.Q(resolved_by__isnull=False, resolve_time__isnull=False) & ~models.Q(resolve_remark="")),
                name="account_hold_ops_closure_says_who_when_why",
            ),
        ]

    def __str__(self) -> str:
        return f"hold {self.user_id}/{self.coin_id} {self.shortfall}"


class TreasuryStatus(models.IntegerChoices):
    PENDING = 1, "pending confirmation"
    BOOKED = 2, "booked to the house (treasury)"
    REORGED = 3, "orphaned by a reorg"


class TreasuryReceipt(models.Model):
    """
    Money that arrived from outside the exchange at one of its own addresses that is no deposit
    address (hot, gas station, change, cold): a treasury receipt, never a user's deposit.

    Found by the scanner like a deposit, under the same unique key (coin, tx_hash, log_index); at
    the coin's confirmations, on a block still canonical, it is booked to the house account
    `treasury` (HOUSE_TREASURY_IN), once; a reorg that orphans it books the reversal. A transfer
    from another exchange address is internal (a sweep, a top-up, a payout's change) and is not
    recorded here.
    """

    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    tx_hash = models.CharField(max_length=255)
    log_index = models.IntegerField(default=-1)
    from_address = models.CharField(max_length=255, blank=True, default="")
    to_address = models.CharField(max_length=255)
    amount = models.DecimalField(**AMOUNT)
    block_number = models.BigIntegerField()
    block_hash = models.CharField(max_length=128)
    # Times it was found again after a reorg orphaned it: each booking has a reference of its own.
    generation = models.IntegerField(default=0)
    status = models.SmallIntegerField(choices=TreasuryStatus.choices, default=TreasuryStatus.PENDING)
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)
    book_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "recharge_treasury_receipt"
        constraints = [
            models.UniqueConstraint(fields=["coin", "tx_hash", "log_index"], name="uk_treasury_coin_tx_index"),
        ]
        indexes = [models.Index(fields=["status", "block_number"], name="idx_treasury_status_block")]

    def __str__(self) -> str:
        return f"treasury {self.coin_id} {self.tx_hash}:{self.log_index}"

    @property
    def biz_ref(self) -> str:
        """The house reference of this booking (and, suffixed, of its reversal)."""
        return f"treasury-{self.id}" if self.generation == 0 else f"treasury-{self.id}-g{self.generation}"
