"""
btc_utxo: the exchange's own Bitcoin outputs, as the scanner read them from the blocks.

One row per output paid to one of our addresses (user deposit, hot, change, cold), with the block
that created it and, once a block spends it, the spending transaction and its block. Payouts lock
rows (`locked_by`) and record their signed, not yet mined spend (`pending_txid`); the chain facts
and the payout columns are written by different writers and never overwrite each other.
"""

from __future__ import annotations

from django.db import models

from addresses.models import AddressType, WalletAddress


class BtcUtxo(models.Model):
    txid = models.CharField(max_length=64)
    vout = models.IntegerField()
    value_sats = models.BigIntegerField()
    # The output's scriptPubKey: what the scanner matched (never the node's address string).
    script_hex = models.CharField(max_length=200)
    address = models.ForeignKey(WalletAddress, on_delete=models.PROTECT, related_name="+")
    # The address's type and business pool, copied so that coin selection and the sums by kind
    # read (and lock) this table alone: neither ever changes for an address.
    kind = models.SmallIntegerField(choices=AddressType.choices)
    wallet_type = models.CharField(max_length=50)
    block_height = models.BigIntegerField()
    # As long as the scanner's stored block hashes may be (recharges.RecentBlock).
    block_hash = models.CharField(max_length=128)
    # The creating block left the best chain (a reorg). The row is kept, not deleted, so that a
    # payout's lock survives until the transaction is mined again (the row is revived) or released.
    orphaned = models.BooleanField(default=False)
    # The spend seen in a block: NULL while unspent on the best chain the scanner holds.
    spent_txid = models.CharField(max_length=64, null=True, blank=True)
    spent_height = models.BigIntegerField(null=True, blank=True)
    spent_hash = models.CharField(max_length=128, null=True, blank=True)
    # The payout (or sweep) reference that selected this output, set under the row lock in the
    # transaction that stores its signed transaction; pending_txid is that transaction while it is
    # not mined. Both stay after the spend is mined (history); a release clears both.
    locked_by = models.CharField(max_length=64, null=True, blank=True)
    lock_time = models.DateTimeField(null=True, blank=True)
    pending_txid = models.CharField(max_length=64, null=True, blank=True)
    create_time = models.DateTimeField(auto_now_add=True)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "btc_utxo"
        constraints = [
            models.UniqueConstraint(fields=["txid", "vout"], name="uk_btc_utxo_outpoint"),
            models.CheckConstraint(condition=models.Q(value_sats__gte=0), name="btc_utxo_value_not_negative"),
            models.CheckConstraint(condition=models.Q(vout__gte=0), name="btc_utxo_vout_not_negative"),
            # A spend is all three columns or none.
            models.CheckConstraint(
                condition=(
                    models.Q(spent_txid__isnull=True, spent_height__isnull=True, spent_hash__isnull=True)
                    | models.Q(spent_txid__isnull=False, spent_height__isnull=False, spent_hash__isnull=False)
                ),
                name="btc_utxo_spend_whole",
            ),
            models.CheckConstraint(
                condition=models.Q(pending_txid__isnull=True) | models.Q(locked_by__isnull=False),
                name="btc_utxo_pending_is_locked",
            ),
        ]
        indexes = [
            models.Index(fields=["block_height"], name="idx_btc_utxo_height"),
            models.Index(fields=["spent_height"], name="idx_btc_utxo_spent_height"),
            # The scanner's set of unspent outpoints; coin selection's candidates.
            models.Index(fields=["spent_txid", "wallet_type", "kind"], name="idx_btc_utxo_unspent"),
            models.Index(fields=["locked_by"], name="idx_btc_utxo_locked_by"),
        ]

    def __str__(self) -> str:
        return f"{self.txid}:{self.vout}"
