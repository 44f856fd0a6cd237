"""
Risk controls: each coin's circuit breaker, the exchange-wide address blacklist, users' withdrawal
address books, and the proposals (settings_change) through which a risky change waits for a second
person's approval.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import CoinConfig
from wallet_project.db import ExactCharField


class BreakerSource(models.TextChoices):
    RECONCILIATION = "RECONCILIATION", "reconciliation (ledger against chain)"
    PAYOUT = "PAYOUT", "payout (an impossible state at signing)"
    SCANNER = "SCANNER", "scanner (an output of a payout spent elsewhere)"
    OPS = "OPS", "ops (admin or ops API)"


class CoinBreaker(models.Model):
    """
    A coin's circuit breaker. While tripped no withdrawal of the coin is signed: applications are
    still accepted and approved ones wait. Created at its first trip; cleared only by an approved
    proposal (controls.breakers).
    """

    coin = models.OneToOneField(
        CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id", related_name="+"
    )
    tripped = models.BooleanField(default=False)
    # Bumped by every trip and clear: a clearing proposal names the version it was made against,
    # so a trip that comes after the proposal is never cleared by it unseen.
    version = models.PositiveIntegerField(default=0)
    trip_count = models.PositiveIntegerField(default=0, help_text="Trips since it was last cleared.")
    source = models.CharField(max_length=16, choices=BreakerSource.choices, blank=True, default="")
    reason = models.CharField(max_length=500, blank=True, default="", help_text="Why it was first tripped.")
    tripped_at = models.DateTimeField(null=True, blank=True)
    tripped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    last_tripped_at = models.DateTimeField(null=True, blank=True)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    clear_remark = models.CharField(max_length=500, blank=True, default="")
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "coin_breaker"
        verbose_name = "circuit breaker"
        verbose_name_plural = "circuit breakers"
        permissions = [
            ("trip_coinbreaker", "Can trip a coin's circuit breaker (stops signing its withdrawals)"),
            ("clear_coinbreaker", "Can propose, and approve another person's proposal, to clear a circuit breaker"),
        ]

    def __str__(self) -> str:
        return f"{self.coin_id}: {'TRIPPED' if self.tripped else 'closed'}"


class BreakerAction(models.TextChoices):
    TRIP = "TRIP", "tripped"
    REPEAT = "REPEAT", "tripped again while tripped"
    CLEAR = "CLEAR", "cleared"


class BreakerLog(models.Model):
    """Every trip and clear of a breaker, append-only: who or what, when, why."""

    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    action = models.CharField(max_length=16, choices=BreakerAction.choices)
    source = models.CharField(max_length=16, choices=BreakerSource.choices, blank=True, default="")
    reason = models.CharField(max_length=500)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    create_time = models.DateTimeField()

    class Meta:
        db_table = "coin_breaker_log"
        verbose_name = "circuit breaker event"
        verbose_name_plural = "circuit breaker log"
        indexes = [models.Index(fields=["coin", "id"], name="idx_breaker_log_coin")]

    def __str__(self) -> str:
        return f"{self.coin_id} {self.action}"


class BlacklistAddress(models.Model):
    """An address no withdrawal may pay, on one chain (so for every coin of it)."""

    chain_id = models.CharField(max_length=32)
    # As the chain's validation writes it (EIP-55 for EVM, lower-case bech32), compared byte for
    # byte: base58 TRON addresses are case-sensitive.
    address = ExactCharField(max_length=255)
    reason = models.CharField(max_length=255)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    create_time = models.DateTimeField()

    class Meta:
        db_table = "address_blacklist"
        verbose_name = "blacklisted address"
        verbose_name_plural = "address blacklist"
        permissions = [
            ("manage_blacklist", "Can propose, and approve another person's proposal, to change the blacklist")
        ]
        constraints = [models.UniqueConstraint(fields=["chain_id", "address"], name="uk_blacklist_chain_address")]

    def __str__(self) -> str:
        return f"{self.chain_id} {self.address}"


class AddressBookEntry(models.Model):
    """An address a user saved to withdraw to; usable once its cooling period has passed."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    chain_id = models.CharField(max_length=32)
    address = ExactCharField(max_length=255)
    label = models.CharField(max_length=64, blank=True, default="")
    create_time = models.DateTimeField()
    usable_at = models.DateTimeField()

    class Meta:
        db_table = "withdraw_address_book"
        verbose_name = "address book entry"
        verbose_name_plural = "address books"
        constraints = [
            models.UniqueConstraint(fields=["user", "chain_id", "address"], name="uk_address_book_user_address")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} {self.chain_id} {self.address}"


class AddressBookPolicy(models.Model):
    """A user's "address book only" switch: when on, withdrawals go only to usable book entries."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    book_only = models.BooleanField(default=False)
    # Switching it off waits the cooling period too (a stolen session must not switch it off and
    # withdraw at once): the switch is on until then.
    release_at = models.DateTimeField(null=True, blank=True)
    update_time = models.DateTimeField()

    class Meta:
        db_table = "withdraw_address_book_policy"
        verbose_name = "address book switch"
        verbose_name_plural = "address book switches"

    def __str__(self) -> str:
        return f"{self.user_id}: {'book only' if self.book_only else 'any address'}"


class ChangeStatus(models.TextChoices):
    PENDING = "PENDING", "waiting for a second person"
    APPLIED = "APPLIED", "approved and applied"
    REJECTED = "REJECTED", "rejected"
    # The setting moved between the proposal and its approval: nothing was applied.
    STALE = "STALE", "outdated: the setting changed since it was proposed"


class SettingsChange(models.Model):
    """
    A risky change proposed by one staff member, applied only when another one approves it.

    The row is the audit record: who proposed what (the values before and after) and why, and who
    approved or rejected it, when and why.
    """

    kind = models.CharField(max_length=32, help_text="What is changed, e.g. coin_config, breaker_clear.")
    target = models.CharField(max_length=128, help_text="Which row, e.g. the coin, the hold, the address.")
    summary = models.CharField(max_length=500)
    before = models.JSONField(default=dict)
    after = models.JSONField(default=dict)
    reason = models.CharField(max_length=500)
    status = models.CharField(max_length=16, choices=ChangeStatus.choices, default=ChangeStatus.PENDING)
    proposed_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    proposed_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_remark = models.CharField(max_length=500, blank=True, default="")
    # kind|target while pending, NULL once decided: one pending proposal per target at a time.
    open_key = ExactCharField(max_length=200, null=True, blank=True, unique=True)

    class Meta:
        db_table = "settings_change"
        verbose_name = "proposed change"
        verbose_name_plural = "proposed changes (four eyes)"
        permissions = [
            (
                "decide_settingschange",
                "Can approve or reject another person's proposed change (with its own permission)",
            )
        ]
        indexes = [models.Index(fields=["status", "proposed_at"], name="idx_settings_change_status")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.kind} {self.target}"
