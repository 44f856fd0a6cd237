"""
Proof-of-reserves snapshots: per coin a Merkle-sum tree of what the users own, and the exchange's
addresses with their balances at a stated height and a signature by each address's key.

Written once by reserves.services (a snapshot is never edited; a cold address's signature is the
one later addition, checked before it is stored). See reserves/services.py for the design.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from addresses.models import AddressType
from coins.models import CoinConfig

# Base units (satoshi, wei, sun) as exact integers: a wei balance of DECIMAL(38,18) has up to 38
# digits, more than a BIGINT holds; a sum of a million of them a few more.
BASE_UNITS = {"max_digits": 45, "decimal_places": 0}


class ReserveSnapshot(models.Model):
    # The moment the ledger was read (whole seconds: the signed statement names it).
    taken_at = models.DateTimeField()
    # sha256 over every coin's "coin root total" line: what each address signs (tools/verify_reserves.py).
    snapshot_root = models.CharField(max_length=64)
    statement = models.CharField(max_length=255)
    # Set once every address with a key here has signed: only published snapshots are served to users.
    published_at = models.DateTimeField(null=True, blank=True)
    create_time = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "reserve_snapshot"
        verbose_name = "reserves snapshot"
        indexes = [models.Index(fields=["published_at"], name="idx_reserve_snapshot_published")]

    def __str__(self) -> str:
        return f"snapshot {self.id} at {self.taken_at:%Y-%m-%d %H:%M:%S}"


class ReserveTree(models.Model):
    """One coin's Merkle-sum tree of a snapshot: its root and total, and what a proof is recomputed from."""

    snapshot = models.ForeignKey(ReserveSnapshot, on_delete=models.PROTECT, related_name="trees")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    root = models.CharField(max_length=64)
    total_base_units = models.DecimalField(**BASE_UNITS, help_text="Σ of the leaves: what the users own.")
    leaf_count = models.BigIntegerField()
    depth = models.SmallIntegerField()
    # Users whose debt exceeds their balance: their leaf is 0, and what they owe is kept apart here
    # (a receivable of the exchange, never netted against what it owes the others).
    users_in_debt = models.IntegerField(default=0)
    debts_excluded_base_units = models.DecimalField(**BASE_UNITS, default=0)
    # The key each user's salt is derived from (HMAC). Not a key to funds: it keeps leaves anonymous
    # to other users, who see them as siblings. Whoever reads this table can read the balances anyway.
    salt_secret = models.BinaryField(editable=False)
    # The nodes of the levels from reserves.merkle.BLOCK_LEVELS up, packed (hash + 16-byte sum).
    upper = models.BinaryField(editable=False)

    class Meta:
        db_table = "reserve_tree"
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "coin"], name="uk_reserve_tree_snapshot_coin"),
            models.CheckConstraint(condition=models.Q(total_base_units__gte=0), name="reserve_tree_total_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.coin_id} of snapshot {self.snapshot_id}"


class ReserveLeaf(models.Model):
    """A user's leaf. user_id is a plain column: a snapshot is a record of a moment, not a link to live rows."""

    tree = models.ForeignKey(ReserveTree, on_delete=models.PROTECT, related_name="+")
    position = models.BigIntegerField()
    user_id = models.BigIntegerField()
    balance_base_units = models.DecimalField(**BASE_UNITS)

    class Meta:
        db_table = "reserve_leaf"
        constraints = [
            models.UniqueConstraint(fields=["tree", "user_id"], name="uk_reserve_leaf_tree_user"),
            models.UniqueConstraint(fields=["tree", "position"], name="uk_reserve_leaf_tree_position"),
            models.CheckConstraint(condition=models.Q(balance_base_units__gte=0), name="reserve_leaf_balance_gte_0"),
        ]

    def __str__(self) -> str:
        return f"leaf {self.position} of tree {self.tree_id}"


class SignedBy(models.IntegerChoices):
    KEY = 1, "the address's key in this wallet"
    OPS = 2, "supplied by ops (cold address)"


class ReserveAddress(models.Model):
    """An exchange address in a snapshot, where it stood at `height`, and its signature over the statement."""

    snapshot = models.ForeignKey(ReserveSnapshot, on_delete=models.PROTECT, related_name="addresses")
    chain_id = models.CharField(max_length=32)
    address = models.CharField(max_length=255)
    address_type = models.SmallIntegerField(choices=AddressType.choices)
    height = models.BigIntegerField()
    block_hash = models.CharField(max_length=128, blank=True, default="")
    # Watch-only (a cold address): its key is not here, ops supply the signature.
    watch_only = models.BooleanField(default=False)
    signature = models.TextField(blank=True, default="")
    signed_by = models.SmallIntegerField(choices=SignedBy.choices, null=True, blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)
    signature_operator = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        db_table = "reserve_address"
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "address"], name="uk_reserve_address_snapshot_address"),
        ]

    def __str__(self) -> str:
        return self.address


class ReserveHolding(models.Model):
    """What an address held of one coin at its snapshot height."""

    address = models.ForeignKey(ReserveAddress, on_delete=models.PROTECT, related_name="holdings")
    coin = models.ForeignKey(CoinConfig, on_delete=models.PROTECT, to_field="coin_id", db_column="coin_id")
    balance_base_units = models.DecimalField(**BASE_UNITS)

    class Meta:
        db_table = "reserve_holding"
        constraints = [
            models.UniqueConstraint(fields=["address", "coin"], name="uk_reserve_holding_address_coin"),
            models.CheckConstraint(condition=models.Q(balance_base_units__gte=0), name="reserve_holding_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.address_id}/{self.coin_id}"
