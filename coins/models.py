"""coin_config: the seed's coin table, with amounts widened and withdrawal limits made configurable."""

from __future__ import annotations

from decimal import Decimal

from django.db import models

AMOUNT = {"max_digits": 38, "decimal_places": 18}


class Switch(models.IntegerChoices):
    ENABLED = 1, "enabled"
    DISABLED = 2, "disabled"


class FeeType(models.IntegerChoices):
    FIXED = 1, "fixed"
    RATE = 2, "rate"


class CoinConfig(models.Model):
    coin_id = models.CharField(max_length=32, unique=True, help_text="e.g. BTC, USDT-ERC20")
    coin_name = models.CharField(max_length=50)
    coin_symbol = models.CharField(max_length=20)
    chain_id = models.CharField(max_length=32, db_index=True, help_text="BTC, ETH or TRON")
    chain_name = models.CharField(max_length=50)
    contract_address = models.CharField(
        max_length=255, null=True, blank=True, help_text="A token's contract; empty for the chain's native coin."
    )
    # Said explicitly, never inferred from a missing contract: a token saved without its contract
    # would otherwise be taken for the native coin and credit native deposits as tokens.
    is_native = models.BooleanField(
        default=False, help_text="The chain's own coin (BTC, ETH, TRX): moved by plain transfers, not by a contract."
    )
    # chain_id for the native coin, NULL for a token, computed by the database. Its unique index
    # allows one native coin per chain: MariaDB has no partial unique index, and NULLs never
    # collide. Generated rather than written by the code, so it can never disagree with is_native.
    native_chain = models.GeneratedField(
        expression=models.Case(models.When(is_native=True, then=models.F("chain_id")), default=models.Value(None)),
        output_field=models.CharField(max_length=32, null=True),
        db_persist=True,
    )
    decimals = models.IntegerField(default=18)
    min_recharge_amount = models.DecimalField(**AMOUNT, default=Decimal("0.00000001"))
    max_recharge_amount = models.DecimalField(**AMOUNT, default=Decimal("1000000"))
    min_withdraw_amount = models.DecimalField(**AMOUNT, default=Decimal("0.00000001"))
    max_withdraw_amount = models.DecimalField(**AMOUNT, default=Decimal("1000000"))
    withdraw_fee = models.DecimalField(**AMOUNT, default=Decimal("0"))
    withdraw_fee_type = models.SmallIntegerField(choices=FeeType.choices, default=FeeType.FIXED)
    withdraw_fee_rate = models.DecimalField(max_digits=10, decimal_places=6, default=Decimal("0.001"))
    required_confirmations = models.IntegerField(default=6)
    # Replaces the seed's hard-coded 100000 daily limit and "large amount" audit rule.
    withdraw_daily_limit = models.DecimalField(**AMOUNT, default=Decimal("100000"))
    withdraw_audit_threshold = models.DecimalField(
        **AMOUNT, default=Decimal("10000"), help_text="Above this an auditor must approve."
    )
    withdraw_dual_audit_threshold = models.DecimalField(
        **AMOUNT, default=Decimal("100000"), help_text="Above this two different auditors must approve."
    )
    # Withdrawal risk rules (withdrawals.risk_rules), in coin units; NULL switches the rule off for the coin.
    risk_first_address_amount = models.DecimalField(
        **AMOUNT,
        null=True,
        blank=True,
        help_text="A withdrawal above this to an address no withdrawal ever paid goes to review.",
    )
    risk_velocity_amount = models.DecimalField(
        **AMOUNT,
        null=True,
        blank=True,
        help_text="More than this withdrawn by one user within RISK_VELOCITY_WINDOW_MINUTES goes to review.",
    )
    # Sweeps (sweeps app): a deposit address holding at least this of the coin is swept into a hot
    # address; NULL: the coin is not swept.
    sweep_threshold = models.DecimalField(
        **AMOUNT,
        null=True,
        blank=True,
        help_text="A deposit address holding at least this is swept into a hot address (empty: never swept).",
    )
    status = models.SmallIntegerField(choices=Switch.choices, default=Switch.ENABLED, db_index=True)
    recharge_enabled = models.SmallIntegerField(choices=Switch.choices, default=Switch.ENABLED)
    withdraw_enabled = models.SmallIntegerField(choices=Switch.choices, default=Switch.ENABLED)
    sort_order = models.IntegerField(default=0, db_index=True)
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "coin_config"
        verbose_name = "coin"
        verbose_name_plural = "coins"
        constraints = [
            models.CheckConstraint(condition=models.Q(decimals__gte=0, decimals__lte=18), name="coin_decimals_0_18"),
            models.CheckConstraint(
                condition=models.Q(min_withdraw_amount__gt=0, min_recharge_amount__gt=0),
                name="coin_minimums_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(max_withdraw_amount__gte=models.F("min_withdraw_amount")),
                name="coin_withdraw_range",
            ),
            models.CheckConstraint(condition=models.Q(withdraw_fee__gte=0), name="coin_fee_not_negative"),
            models.CheckConstraint(
                condition=models.Q(required_confirmations__gte=1), name="coin_confirmations_positive"
            ),
            models.UniqueConstraint(fields=["native_chain"], name="uk_coin_native_chain"),
            # A native coin has no contract; any other coin is a token and has one.
            models.CheckConstraint(
                condition=models.Q(is_native=True, contract_address__isnull=True)
                | (models.Q(is_native=False, contract_address__isnull=False) & ~models.Q(contract_address="")),
                name="coin_native_xor_contract",
            ),
            # Two auditors are never needed below the amount one auditor must look at.
            models.CheckConstraint(
                condition=models.Q(withdraw_dual_audit_threshold__gte=models.F("withdraw_audit_threshold")),
                name="coin_audit_thresholds_ordered",
            ),
        ]

    def __str__(self) -> str:
        return self.coin_id

    @property
    def is_enabled(self) -> bool:
        return self.status == Switch.ENABLED

    @property
    def quantum(self) -> Decimal:
        """The smallest amount of this coin: 1 base unit (satoshi, wei, sun)."""
        return Decimal(1).scaleb(-self.decimals)
