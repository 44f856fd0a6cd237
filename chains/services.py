"""Writes of the chains app: nonce allocation for EVM sending addresses."""

from __future__ import annotations

from django.db import IntegrityError, transaction

from chains.models import NonceCursor


def nonce_allocate(*, chain_id: str, address: str, node_next: int) -> int:
    """
    Give out the next nonce of an EVM address: the higher of ours and the node's pending count.

    Joins the caller's transaction, which must also store the transaction signed with it: the
    cursor row stays locked until then, so concurrent senders from one address take turns.
    `node_next` (eth_getTransactionCount "pending") lets transactions sent from this address by
    other means move the cursor forward; it never moves back.
    """
    with transaction.atomic(savepoint=False):
        cursor = NonceCursor.objects.select_for_update().filter(chain_id=chain_id, address=address).first()
        if cursor is None:
            try:
                with transaction.atomic():  # a savepoint: another sender may create the row first
                    NonceCursor.objects.create(chain_id=chain_id, address=address)
            except IntegrityError:
                pass
            cursor = NonceCursor.objects.select_for_update().get(chain_id=chain_id, address=address)
        nonce = max(cursor.next_nonce, node_next)
        cursor.next_nonce = nonce + 1
        cursor.save(update_fields=["next_nonce", "update_time"])
        return nonce


@transaction.atomic(durable=True)
def nonces_forget(*, chain_id: str) -> int:
    """
    Forget the nonces given out on a chain that was replaced by a new one (a dev chain started empty).

    The new chain counts every address from 0 again: a cursor left ahead of it would number the
    next transaction past a gap that the node never mines. Returns how many cursors were dropped.
    """
    dropped, _ = NonceCursor.objects.filter(chain_id=chain_id).delete()
    return dropped
