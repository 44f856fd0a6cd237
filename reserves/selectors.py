"""Reads of proof-of-reserves snapshots: a user's proof, and the snapshots to show."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from coins import selectors as coins_selectors
from reserves import merkle
from reserves.models import ReserveHolding, ReserveLeaf, ReserveSnapshot, ReserveTree
from tools import verify_reserves
from wallet_project.errors import NotFound


def snapshot_latest() -> ReserveSnapshot | None:
    """Return the newest published snapshot (None before the first)."""
    return ReserveSnapshot.objects.filter(published_at__isnull=False).order_by("-id").first()


def taken_at_text(moment: datetime) -> str:
    """Return a snapshot's time as its statement writes it (UTC, whole seconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _units(value: object) -> str:
    return str(int(value))


def proof_get(*, user_id: int, coin_id: str) -> dict[str, Any]:
    """
    Return the user's proof for coin_id in the latest published snapshot: their leaf and salt, the
    sibling path, the coin's root and total, every coin's root and total (which the statement
    signs), and the coin's addresses with their balances and signatures (format: tools/verify_reserves.py).

    :raises UnknownCoin: no such coin.
    :raises NotFound: no published snapshot holds the coin, or the user had no balance in it.
    """
    coin = coins_selectors.coin_get(coin_id=coin_id)
    snapshot = snapshot_latest()
    tree = None if snapshot is None else ReserveTree.objects.filter(snapshot=snapshot, coin=coin).first()
    if snapshot is None or tree is None:
        raise NotFound(f"No published reserves snapshot covers {coin.coin_id} yet.", field="coin")
    leaf = ReserveLeaf.objects.filter(tree=tree, user_id=user_id).first()
    if leaf is None:
        raise NotFound(
            f"You held no {coin.coin_id} balance at snapshot {snapshot.id}, so you have no leaf in it.", field="coin"
        )
    keep_from = min(merkle.BLOCK_LEVELS, tree.depth)
    start = (leaf.position >> keep_from) << keep_from
    block = list(
        ReserveLeaf.objects.filter(tree=tree, position__gte=start, position__lt=start + (1 << keep_from))
        .order_by("position")
        .values_list("user_id", "balance_base_units")
    )
    secret = bytes(tree.salt_secret)
    path = merkle.sibling_path(
        secret=secret,
        leaf_count=tree.leaf_count,
        upper=bytes(tree.upper),
        position=leaf.position,
        block=[(uid, int(balance)) for uid, balance in block],
    )
    coins = (
        ReserveTree.objects.filter(snapshot=snapshot)
        .order_by("coin_id")
        .values_list("coin_id", "root", "total_base_units")
    )
    holdings = (
        ReserveHolding.objects.filter(address__snapshot=snapshot, coin=coin)
        .select_related("address")
        .order_by("address__id")
    )
    return {
        "format": verify_reserves.PROOF_FORMAT,
        "snapshot_id": snapshot.id,
        "taken_at": taken_at_text(snapshot.taken_at),
        "snapshot_root": snapshot.snapshot_root,
        "statement": snapshot.statement,
        "coin": coin.coin_id,
        "decimals": coin.decimals,
        "root": tree.root,
        "total": _units(tree.total_base_units),
        "leaf_count": tree.leaf_count,
        "coins": [{"coin": c, "root": root, "total": _units(total)} for c, root, total in coins],
        "leaf": {
            "index": leaf.position,
            "user_id": leaf.user_id,
            "salt": merkle.salt_of(secret=secret, user_id=leaf.user_id).hex(),
            "balance": _units(leaf.balance_base_units),
        },
        "path": [{"hash": sibling.hash.hex(), "sum": str(sibling.sum)} for sibling in path],
        "addresses": [
            {
                "chain": holding.address.chain_id,
                "address": holding.address.address,
                "kind": holding.address.get_address_type_display(),
                "height": holding.address.height,
                "block_hash": holding.address.block_hash,
                "balance": _units(holding.balance_base_units),
                "signature": holding.address.signature,
                "signed_by": holding.address.get_signed_by_display() if holding.address.signed_by else "",
            }
            for holding in holdings
        ],
    }
