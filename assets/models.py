"""
The ledger: one balance row per (user, coin), an append-only flow journal, and the event outbox.

Every change of a balance writes exactly one flow row and one outbox row in the same
transaction. For each (user, coin):
    available == sum(flow.amount)   frozen == sum(flow.frozen_amount)   debt == sum(flow.debt_amount)
and each flow's *_before equals the previous flow's *_after. What the user owns is
available + frozen - debt; `debt` is what a reorg took back beyond the balance (see
assets.services: a negative available balance, kept in a column of its own so that no column is
ever negative), and while it is open nothing is available.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import AMOUNT, CoinConfig
from wallet_project.db import DecimalArithmeticCheck, ExactCharField


class BusinessType(models.IntegerChoices):
    """The seed's `business_type` of ASSET_CHANGE messages. Numbers are part of the message contract."""

    RECHARGE = 1, "deposit credited"
    WITHDRAW_FREEZE = 2, "withdrawal applied: amount frozen"
    WITHDRAW_UNFREEZE = 3, "withdrawal rejected or failed: amount released"
    WITHDRAW_SETTLE = 4, "withdrawal completed: frozen amount paid out"
    INTERNAL_TRANSFER_IN = 5, "internal withdrawal received"
    REORG_REVERSAL = 6, "credited deposit orphaned by a reorg: reversed"
    # No longer booked: a shortfall is a REORG_DEBT now. Holds made before still carry this freeze.
    REORG_FREEZE = 7, "reorg shortfall: remaining balance frozen"
    ADJUSTMENT_CREDIT = 8, "manual adjustment: credit"
    ADJUSTMENT_DEBIT = 9, "manual adjustment: debit"
    REORG_DEBT = 10, "reorg shortfall: what the balance could not cover, booked as the user's debt"
    REORG_DEBT_REPAY = 11, "reorg debt repaid from a credit of the same user and coin"
    REORG_DEBT_SETTLE = 12, "reorg debt settled by ops: the user paid it back off-system"
    REORG_DEBT_WRITE_OFF = 13, "reorg debt written off by ops: the exchange's loss"
    WITHDRAW_CANCEL = 14, "withdrawal cancelled by its owner: amount released"
    # 20-29: postings of the exchange's own house accounts (house_flow), never of a user.
    HOUSE_WITHDRAW_FEE = 20, "house: withdrawal fee collected"
    HOUSE_NETWORK_FEE = 21, "house: network fee paid (payout, sweep, gas top-up, treasury transfer)"
    HOUSE_TREASURY_IN = 22, "house: treasury receipt (funds moved in from outside the exchange)"
    HOUSE_TREASURY_OUT = 23, "house: treasury transfer out of the exchange"
    HOUSE_UNCLAIMED_DEPOSIT = 24, "house: deposit held on chain but credited to no user"
    HOUSE_REORG_LOSS = 25, "house: reorg debt written off, the exchange's loss"
    HOUSE_ADJUSTMENT = 26, "house: manual adjustment"
    HOUSE_DEBT_SETTLED_OFF_CHAIN = (
        27,
        "house: reorg debt repaid off-system; the coin stays short on chain until ops bring it on chain as a "
        "treasury receipt",
    )


class Balance(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, db_column="user_id")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    available = models.DecimalField(**AMOUNT, default=0)
    frozen = models.DecimalField(**AMOUNT, default=0)
    debt = models.DecimalField(
        **AMOUNT, default=0, help_text="What the user owes after a reorg took back more than the balance held."
    )
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "asset_balance"
        constraints = [
            models.UniqueConstraint(fields=["user", "coin"], name="uk_asset_balance_user_coin"),
            models.CheckConstraint(condition=models.Q(available__gte=0), name="asset_balance_available_gte_0"),
            models.CheckConstraint(condition=models.Q(frozen__gte=0), name="asset_balance_frozen_gte_0"),
            models.CheckConstraint(condition=models.Q(debt__gte=0), name="asset_balance_debt_gte_0"),
            # A debt is a negative available balance: any credit repays it before money is available.
            models.CheckConstraint(
                condition=models.Q(debt=0) | models.Q(available=0),
                name="asset_balance_debt_only_when_nothing_available",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}/{self.coin_id}"


class Flow(models.Model):
    """One balance change. Append-only: a mistake is corrected by a compensating flow."""

    flow_no = ExactCharField(max_length=32, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, db_column="user_id")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    business_type = models.SmallIntegerField(choices=BusinessType.choices)
    # What caused the change: a recharge_no, withdraw_no, adjustment ticket... Unique per type,
    # which is what makes every posting idempotent.
    biz_ref = ExactCharField(max_length=64)
    amount = models.DecimalField(**AMOUNT, help_text="Change of the available balance (signed).")
    balance_before = models.DecimalField(**AMOUNT)
    balance_after = models.DecimalField(**AMOUNT)
    frozen_amount = models.DecimalField(**AMOUNT, default=0, help_text="Change of the frozen balance (signed).")
    frozen_before = models.DecimalField(**AMOUNT, default=0)
    frozen_after = models.DecimalField(**AMOUNT, default=0)
    debt_amount = models.DecimalField(**AMOUNT, default=0, help_text="Change of the debt (signed).")
    debt_before = models.DecimalField(**AMOUNT, default=0)
    debt_after = models.DecimalField(**AMOUNT, default=0)
    ref_tx_hash = models.CharField(max_length=255, blank=True, default="")
    memo = models.CharField(max_length=255, blank=True, default="")
    create_time = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "asset_flow"
        constraints = [
            models.UniqueConstraint(fields=["business_type", "biz_ref"], name="uk_asset_flow_business_ref"),
            DecimalArithmeticCheck(
                condition=models.Q(balance_after=models.F("balance_before") + models.F("amount")),
                name="asset_flow_available_chains",
            ),
            DecimalArithmeticCheck(
                condition=models.Q(frozen_after=models.F("frozen_before") + models.F("frozen_amount")),
                name="asset_flow_frozen_chains",
            ),
            models.CheckConstraint(
                condition=models.Q(balance_after__gte=0, frozen_after__gte=0), name="asset_flow_not_negative"
            ),
            DecimalArithmeticCheck(
                condition=models.Q(debt_after=models.F("debt_before") + models.F("debt_amount")),
                name="asset_flow_debt_chains",
            ),
            models.CheckConstraint(condition=models.Q(debt_after__gte=0), name="asset_flow_debt_not_negative"),
        ]
        indexes = [models.Index(fields=["user", "coin", "id"], name="idx_asset_flow_user_coin")]

    def __str__(self) -> str:
        return self.flow_no


class HouseAccount(models.TextChoices):
    """The exchange's own ledger accounts, one balance per (account, coin). Names are part of the event contract."""

    WITHDRAW_FEES = "withdraw_fees", "withdrawal fees collected"
    NETWORK_FEES = "network_fees", "network fees paid"
    TREASURY = "treasury", "treasury transfers in and out"
    UNCLAIMED = "unclaimed", "deposits credited to no user"
    LOSSES = "losses", "losses carried by the exchange"


class HouseBalance(models.Model):
    """
    The balance of one house account in one coin. Signed: an expense account (network fees, losses)
    goes below zero, which is what it is. balance == sum(house_flow.amount) of the same (account, coin).
    """

    account = models.CharField(max_length=32, choices=HouseAccount.choices)
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    balance = models.DecimalField(**AMOUNT, default=0)
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "house_balance"
        constraints = [
            models.UniqueConstraint(fields=["account", "coin"], name="uk_house_balance_account_coin"),
        ]

    def __str__(self) -> str:
        return f"{self.account}/{self.coin_id}"


class HouseFlow(models.Model):
    """One change of a house balance. Append-only, idempotent per (business_type, biz_ref) like a user's flow."""

    flow_no = ExactCharField(max_length=32, unique=True)
    account = models.CharField(max_length=32, choices=HouseAccount.choices)
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    business_type = models.SmallIntegerField(choices=BusinessType.choices)
    biz_ref = ExactCharField(max_length=64)
    amount = models.DecimalField(**AMOUNT, help_text="Change of the house balance (signed).")
    balance_before = models.DecimalField(**AMOUNT)
    balance_after = models.DecimalField(**AMOUNT)
    ref_tx_hash = models.CharField(max_length=255, blank=True, default="")
    memo = models.CharField(max_length=255, blank=True, default="")
    create_time = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "house_flow"
        constraints = [
            models.UniqueConstraint(fields=["business_type", "biz_ref"], name="uk_house_flow_business_ref"),
            DecimalArithmeticCheck(
                condition=models.Q(balance_after=models.F("balance_before") + models.F("amount")),
                name="house_flow_chains",
            ),
            models.CheckConstraint(
                condition=models.Q(business_type__gte=20, business_type__lte=29), name="house_flow_house_types"
            ),
        ]
        indexes = [models.Index(fields=["coin", "account", "id"], name="idx_house_flow_coin_account")]

    def __str__(self) -> str:
        return self.flow_no


class OutboxStatus(models.IntegerChoices):
    PENDING = 1, "pending"
    SENT = 2, "sent"


class OutboxMessage(models.Model):
    """
    An event written in the same transaction as the change it describes.

    The relay publishes pending rows to the broker and marks them sent after the broker confirms;
    delivery is at-least-once, consumers deduplicate by message_id.
    """

    message_id = ExactCharField(max_length=64, unique=True)
    topic = models.CharField(max_length=64)
    tags = models.CharField(max_length=64)
    keys = ExactCharField(max_length=64, help_text="The business number: flow_no, recharge_no, withdraw_no.")
    # Events of one partition key (the user id) are published in id order.
    partition_key = models.CharField(max_length=64)
    payload = models.JSONField()
    status = models.SmallIntegerField(choices=OutboxStatus.choices, default=OutboxStatus.PENDING)
    create_time = models.DateTimeField(auto_now_add=True)
    sent_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "event_outbox"
        indexes = [
            models.Index(fields=["status", "id"], name="idx_event_outbox_status"),
        ]

    def __str__(self) -> str:
        return self.message_id


# --- Event relay ---------------------------------------------------------------------------


class EventRelayMember(models.Model):
    """A running relay process, alive while expires_at is in the future. Counts the relays sharing partitions."""

    owner = models.CharField(max_length=100, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "event_relay_member"

    def __str__(self) -> str:
        return self.owner


class EventRelayLease(models.Model):
    """
    The lease of one outbox partition: only its owner publishes the partition's events, until expires_at.

    A partition is int(partition_key) % EVENT_RELAY_PARTITIONS, so all events of one user belong to
    one partition and one relay publishes them, in id order.
    """

    partition_no = models.PositiveSmallIntegerField(unique=True)
    owner = models.CharField(max_length=100, blank=True, default="")
    expires_at = models.DateTimeField()

    class Meta:
        db_table = "event_relay_lease"

    def __str__(self) -> str:
        return f"{self.partition_no}:{self.owner}"


class ConsumedMessage(models.Model):
    """
    A message a consumer has already handled. Inserted in the consumer's own transaction, the
    unique key makes a redelivered message a no-op (delivery is at-least-once).
    """

    consumer = models.CharField(max_length=64)
    message_id = ExactCharField(max_length=64)
    create_time = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        db_table = "event_consumed"
        constraints = [
            models.UniqueConstraint(fields=["consumer", "message_id"], name="uk_event_consumed_consumer_message"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}:{self.message_id}"
