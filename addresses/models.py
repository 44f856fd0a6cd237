"""wallet_address: the seed's address table, extended for HD derivation and user deposit addresses."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import AMOUNT, CoinConfig


class AddressType(models.IntegerChoices):
    HOT = 1, "hot wallet"
    COLD = 2, "cold wallet (watch-only)"
    USER_DEPOSIT = 3, "user deposit address"


class AddressStatus(models.IntegerChoices):
    NORMAL = 1, "normal"
    DISABLED = 2, "disabled"


class WalletAddress(models.Model):
    # The chain's native coin (BTC, ETH, TRX); the same address receives that chain's tokens.
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    coin_name = models.CharField(max_length=50)
    chain_id = models.CharField(max_length=32)
    address_type = models.SmallIntegerField(choices=AddressType.choices)
    address = models.CharField(max_length=255, unique=True)
    public_key = models.CharField(max_length=255, null=True, blank=True)
    # The seed's wallet_type names the business pool an address belongs to (3.1.2 "separate pools").
    wallet_type = models.CharField(max_length=50, default="default")
    # Assigned owner of a deposit address; NULL while it waits in the pool (and for hot/cold).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, db_column="user_id"
    )
    derivation_path = models.CharField(max_length=64, null=True, blank=True)
    derivation_index = models.BigIntegerField(null=True, blank=True)
    status = models.SmallIntegerField(choices=AddressStatus.choices, default=AddressStatus.NORMAL)
    balance = models.DecimalField(**AMOUNT, default=0)
    min_balance = models.DecimalField(**AMOUNT, default=0)
    max_balance = models.DecimalField(**AMOUNT, default=1000000)
    assign_time = models.DateTimeField(null=True, blank=True)
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "wallet_address"
        constraints = [
            # One deposit address per user and chain. Pool, hot and cold rows have no user, and
            # NULLs never collide in a unique index (MySQL has no partial unique indexes).
            models.UniqueConstraint(fields=["user", "chain_id"], name="uk_wallet_address_user_chain"),
        ]
        indexes = [
            models.Index(fields=["coin"], name="idx_wallet_address_coin"),
            models.Index(fields=["address_type"], name="idx_wallet_address_type"),
            models.Index(fields=["status"], name="idx_wallet_address_status"),
            models.Index(fields=["chain_id", "address_type", "user"], name="idx_wallet_address_pool"),
        ]

    def __str__(self) -> str:
        return self.address
