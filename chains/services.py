"""Writes of the chains app: nonce allocation for EVM sending addresses."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chains.models import NonceCursor


def nonce_allocate(*, chain_id: str, address: str, node_next: int, count: int = 1) -> int:
    """
    Give out the next nonce of an EVM address: the higher of ours and the node's pending count
    (count > 1: that many consecutive nonces, the first returned).

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
        cursor.next_nonce = nonce + count
        cursor.save(update_fields=["next_nonce", "update_time"])
        return nonce


def nonces_allocate(*, chain_id: str, node_next: Mapping[str, int]) -> dict[str, int]:
    """
    nonce_allocate for many addresses at once ({address: node's pending count} → {address: nonce}):
    a run of sweeps from as many deposit addresses. One read locks every cursor (in id order, as
    one by one in that order would), the missing ones are created first (ignoring those another
    sender created meanwhile), one write moves them all on. Joins the caller's transaction, which
    must store the transactions signed with these nonces.
    """
    if not node_next:
        return {}
    with transaction.atomic(savepoint=False):
        addresses = sorted(node_next)
        rows = NonceCursor.objects.filter(chain_id=chain_id, address__in=addresses)
        have = {a.lower() for a in rows.values_list("address", flat=True)}
        missing = [NonceCursor(chain_id=chain_id, address=a) for a in addresses if a.lower() not in have]
        if missing:
            NonceCursor.objects.bulk_create(missing, ignore_conflicts=True)
        cursors = list(
            NonceCursor.objects.select_for_update().filter(chain_id=chain_id, address__in=addresses).order_by("id")
        )
        if len(cursors) != len(addresses):
            raise LookupError(f"nonce cursors of {len(addresses) - len(cursors)} addresses could not be made")
        given = {a.lower(): a for a in addresses}  # an EVM address in any case is the same cursor
        nonces = {}
        now = timezone.now()
        for cursor in cursors:
            address = given[cursor.address.lower()]
            nonce = max(cursor.next_nonce, node_next[address])
            nonces[address] = nonce
            cursor.next_nonce, cursor.update_time = nonce + 1, now
        # One UPDATE a row by primary key: Django's bulk_update spent longer building its CASE
        # expressions than the rows took to write.
        stamp = connection.ops.adapt_datetimefield_value(now)
        with connection.cursor() as sql:
            sql.executemany(
                "UPDATE chain_nonce SET next_nonce = %s, update_time = %s WHERE id = %s",
                [(cursor.next_nonce, stamp, cursor.id) for cursor in cursors],
            )
        return nonces


@transaction.atomic(durable=True)
def nonces_forget(*, chain_id: str) -> int:
    """
    Forget the nonces given out on a chain that was replaced by a new one (a dev chain started empty).

    The new chain counts every address from 0 again: a cursor left ahead of it would number the
    next transaction past a gap that the node never mines. Returns how many cursors were dropped.
    """
    dropped, _ = NonceCursor.objects.filter(chain_id=chain_id).delete()
    return dropped
