"""wallet_address: the seed's address table, extended for HD derivation and user deposit addresses."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from coins.models import AMOUNT, CoinConfig


class AddressType(models.IntegerChoices):
    HOT = 1, "hot wallet"
    COLD = 2, "cold wallet (watch-only)"
    USER_DEPOSIT = 3, "user deposit address"
    # UTXO chains: where a payout sends its change, one fresh address per transaction. Derived
    # from the hot seed and part of its business pool (wallet_type), but never picked as a hot
    # address of its own (hot_wallet_select, hot_addresses). assign_time marks it taken.
    CHANGE = 4, "hot wallet change address"


class AddressStatus(models.IntegerChoices):
    NORMAL = 1, "normal"
    DISABLED = 2, "disabled"


class SecretKind(models.IntegerChoices):
    HD_SEED = 1, "HD seed"
    PRIVATE_KEY = 2, "imported private key"


class KeySecret(models.Model):
    """
    One encrypted secret of the key vault: an HD seed (BIP39 seed bytes) or an imported private key.

    `ciphertext` is nonce (12 bytes) + AES-256-GCM output under key-encryption key `key_version`;
    the associated data binds it to `key_id`, kind, chain and fingerprint, so a ciphertext copied
    to another row does not decrypt. Only addresses.signer reads it.
    """

    key_id = models.UUIDField(unique=True, editable=False)
    kind = models.SmallIntegerField(choices=SecretKind.choices)
    chain_id = models.CharField(max_length=32)
    # An HD seed serves one purpose: user deposit addresses or hot wallets (AddressType).
    purpose = models.SmallIntegerField(choices=AddressType.choices)
    # 1 for an HD seed, NULL for an imported key: with the unique constraint below a chain has at
    # most one seed per purpose (NULLs never collide, and MySQL has no partial unique indexes).
    seed_slot = models.SmallIntegerField(null=True, blank=True, editable=False)
    label = models.CharField(max_length=100, blank=True, default="")
    # Public identifiers: BIP32 master fingerprint (seed) or the key's address (imported key).
    fingerprint = models.CharField(max_length=128)
    # HD seeds: the hardened account path and its extended public key. Deposit addresses are
    # derived from the xpub alone; no secret is decrypted to fill the pool.
    account_path = models.CharField(max_length=64, blank=True, default="")
    account_xpub = models.CharField(max_length=128, blank=True, default="")
    # Next external index to derive; moves under this row's lock, with the rows it derived.
    next_index = models.BigIntegerField(default=0)
    key_version = models.IntegerField()
    ciphertext = models.BinaryField()
    create_time = models.DateTimeField(auto_now_add=True)
    rotate_time = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "wallet_key_vault"
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "purpose", "seed_slot"], name="uk_key_vault_chain_seed"),
            models.CheckConstraint(condition=models.Q(next_index__gte=0), name="key_vault_next_index_not_negative"),
        ]
        indexes = [models.Index(fields=["key_version"], name="idx_key_vault_version")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.chain_id} {self.fingerprint}"


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
    # 3.1.2 "regional": the region a hot address serves (e.g. "eu", "asia"); blank serves everyone,
    # and is where users of a region whose own addresses cannot pay fall back to.
    region = models.CharField(max_length=32, blank=True, default="", db_default="")
    # Assigned owner of a deposit address; NULL while it waits in the pool (and for hot/cold).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, db_column="user_id"
    )
    # The vault entry holding this address's key (NULL: watch-only cold address).
    key_secret = models.ForeignKey(KeySecret, null=True, blank=True, on_delete=models.PROTECT)
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
        verbose_name = "wallet address"
        verbose_name_plural = "wallet addresses"
        permissions = [
            ("change_address_status", "Can disable or enable an address"),
            ("register_cold_address", "Can register a watch-only cold address"),
        ]
        constraints = [
            # One deposit address per user and chain. Pool, hot and cold rows have no user, and
            # NULLs never collide in a unique index (MySQL has no partial unique indexes).
            models.UniqueConstraint(fields=["user", "chain_id"], name="uk_wallet_address_user_chain"),
            models.UniqueConstraint(fields=["key_secret", "derivation_index"], name="uk_wallet_address_key_index"),
        ]
        indexes = [
            models.Index(fields=["coin"], name="idx_wallet_address_coin"),
            models.Index(fields=["address_type"], name="idx_wallet_address_type"),
            models.Index(fields=["status"], name="idx_wallet_address_status"),
            models.Index(fields=["chain_id", "address_type", "user"], name="idx_wallet_address_pool"),
        ]

    def __str__(self) -> str:
        return self.address


class AddressStatusChange(models.Model):
    """Who disabled or enabled an address, when and why: append-only."""

    address = models.ForeignKey(WalletAddress, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.SmallIntegerField(choices=AddressStatus.choices)
    to_status = models.SmallIntegerField(choices=AddressStatus.choices)
    operator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    remark = models.CharField(max_length=500)
    create_time = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "wallet_address_status_log"
        indexes = [models.Index(fields=["address", "id"], name="idx_address_status_log")]
        constraints = [models.CheckConstraint(condition=~models.Q(remark=""), name="address_status_log_remark")]

    def __str__(self) -> str:
        return f"{self.address_id}: {self.get_from_status_display()} -> {self.get_to_status_display()}"


class HotWalletCursor(models.Model):
    """Round-robin position of one business pool of hot wallets: the address picked last."""

    chain_id = models.CharField(max_length=32)
    wallet_type = models.CharField(max_length=50)
    last_address_id = models.BigIntegerField(default=0)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "wallet_hot_cursor"
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "wallet_type"], name="uk_hot_cursor_pool"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id}/{self.wallet_type}"


class ColdAddressRegistration(models.Model):
    """Who registered a watch-only cold address, when and why: append-only."""

    address = models.OneToOneField(WalletAddress, on_delete=models.PROTECT, related_name="registration")
    operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    remark = models.CharField(max_length=500)
    create_time = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "wallet_cold_address_registration"
        constraints = [models.CheckConstraint(condition=~models.Q(remark=""), name="cold_registration_remark")]

    def __str__(self) -> str:
        return f"cold {self.address_id}"


class UserRegion(models.Model):
    """
    The region a user is served from (3.1.2 "regional"): their withdrawals are paid by a hot
    address of that region when one can pay. Set by the exchange's user service or by ops.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    region = models.CharField(max_length=32)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "wallet_user_region"

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.region}"
