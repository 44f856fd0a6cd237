"""Per-chain sending state owned by the chains app: the next nonce of each EVM sending address."""

from __future__ import annotations

from django.db import models


class NonceCursor(models.Model):
    """
    The next nonce this service gives out for an EVM address (hot wallet).

    Allocated under this row's lock in the same transaction that stores the transaction signed
    with it, so two withdrawals never share a nonce and a crash never loses one.
    """

    chain_id = models.CharField(max_length=32)
    address = models.CharField(max_length=64)
    next_nonce = models.BigIntegerField(default=0)
    update_time = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "chain_nonce"
        constraints = [
            models.UniqueConstraint(fields=["chain_id", "address"], name="uk_chain_nonce_address"),
            models.CheckConstraint(condition=models.Q(next_nonce__gte=0), name="chain_nonce_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.chain_id}:{self.address}@{self.next_nonce}"
