"""
The Merkle-sum tree of a coin's user balances: building it, packing what is kept of it, and
recomputing a user's sibling path from what was kept.

Pure computation over integers and bytes (no Django, no database). The hashing is defined once, in
tools/verify_reserves.py, the script users run; this module builds with exactly those functions.

What is kept of a tree of n leaves: the leaves themselves (user id, balance, position; the salts
are derived again from the tree's secret) and the nodes of the levels from BLOCK_LEVELS up, packed
in one blob (hash + 16-byte sum per node, ~8k nodes for a million users). A sibling path is then
the 256 leaves of the user's block, hashed again up to the block's root, and the stored nodes above.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from tools.verify_reserves import (
    EMPTY_HASH,
    LEAF_TAG,
    NODE_TAG,
    SALT_BYTES,
    SUM_BYTES,
    SUM_LIMIT,
    USER_ID_BYTES,
)

# Levels below this are recomputed from the leaves for each proof (2**8 leaves read); the levels
# from here up are stored.
BLOCK_LEVELS = 8
NODE_BYTES = 32 + SUM_BYTES
SECRET_BYTES = 32


class TreeError(ValueError):
    """A leaf cannot be put in the tree (negative or too large), or stored data does not add up."""


def salt_of(*, secret: bytes, user_id: int) -> bytes:
    """Return the user's salt in the tree keyed by secret: HMAC-SHA-256(secret, user id)."""
    return hmac.digest(secret, user_id.to_bytes(USER_ID_BYTES, "big"), "sha256")


def level_sizes(leaf_count: int) -> list[int]:
    """Return the number of nodes of each level, leaves first, root last ([0] for an empty tree)."""
    sizes = [leaf_count]
    while sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def _leaf_hashes(secret: bytes, leaves: Sequence[tuple[int, int]]) -> list[bytes]:
    sha256 = hashlib.sha256
    digest = hmac.digest
    hashes = []
    for user_id, balance in leaves:
        if not 0 <= balance < SUM_LIMIT:
            raise TreeError(f"user {user_id}: a leaf balance must be in [0, 2**128), not {balance}")
        uid = user_id.to_bytes(USER_ID_BYTES, "big")
        salt = digest(secret, uid, "sha256")
        hashes.append(sha256(LEAF_TAG + salt + uid + balance.to_bytes(SUM_BYTES, "big")).digest())
    return hashes


def _level_up(hashes: list[bytes], sums: list[int]) -> tuple[list[bytes], list[int]]:
    if len(hashes) % 2:
        hashes = [*hashes, EMPTY_HASH]
        sums = [*sums, 0]
    sha256 = hashlib.sha256
    up_hashes = []
    up_sums = []
    pairs = zip(hashes[0::2], sums[0::2], hashes[1::2], sums[1::2], strict=True)
    for left_hash, left_sum, right_hash, right_sum in pairs:
        left = left_hash + left_sum.to_bytes(SUM_BYTES, "big")
        up_hashes.append(sha256(NODE_TAG + left + right_hash + right_sum.to_bytes(SUM_BYTES, "big")).digest())
        up_sums.append(left_sum + right_sum)
    return up_hashes, up_sums


@dataclass(frozen=True)
class Tree:
    root: bytes
    total: int
    leaf_count: int
    depth: int
    # The nodes of levels min(BLOCK_LEVELS, depth)..depth, level by level: hash (32) + sum (16 bytes).
    upper: bytes


def _pack(hashes: list[bytes], sums: list[int]) -> bytes:
    return b"".join(h + s.to_bytes(SUM_BYTES, "big") for h, s in zip(hashes, sums, strict=True))


def tree_build(*, secret: bytes, leaves: Sequence[tuple[int, int]]) -> Tree:
    """
    Build the tree over leaves, (user id, balance in base units) in position order.

    :raises TreeError: a balance below 0 or not below 2**128, or a total that is not.
    """
    if len(secret) != SECRET_BYTES:
        raise TreeError("the tree's secret must be 32 bytes")
    sizes = level_sizes(len(leaves))
    depth = len(sizes) - 1
    keep_from = min(BLOCK_LEVELS, depth)
    if not leaves:
        return Tree(root=EMPTY_HASH, total=0, leaf_count=0, depth=0, upper=_pack([EMPTY_HASH], [0]))
    hashes = _leaf_hashes(secret, leaves)
    sums = [balance for _, balance in leaves]
    kept = []
    for level in range(depth + 1):
        if level >= keep_from:
            kept.append(_pack(hashes, sums))
        if level < depth:
            hashes, sums = _level_up(hashes, sums)
    if sums[0] >= SUM_LIMIT:
        raise TreeError("the total of the balances does not fit in 16 bytes")
    return Tree(root=hashes[0], total=sums[0], leaf_count=len(leaves), depth=depth, upper=b"".join(kept))


def positions_shuffle(items: list) -> None:
    """Shuffle the leaves in place: positions then reveal nothing of user ids or sign-up order."""
    random.Random(secrets.randbits(256)).shuffle(items)


@dataclass(frozen=True)
class Sibling:
    hash: bytes
    sum: int


def sibling_path(
    *, secret: bytes, leaf_count: int, upper: bytes, position: int, block: Sequence[tuple[int, int]]
) -> list[Sibling]:
    """
    Return the siblings from the leaf at position up to the root.

    `block` holds the (user id, balance) of every leaf of the position's block, in position order:
    positions (position >> k) << k to that + 2**k - 1 that exist, k = min(BLOCK_LEVELS, depth).
    :raises TreeError: the block's recomputed root is not the stored node (damaged or altered data).
    """
    sizes = level_sizes(leaf_count)
    depth = len(sizes) - 1
    keep_from = min(BLOCK_LEVELS, depth)
    start = (position >> keep_from) << keep_from
    if not start <= position < start + len(block) or len(block) != min(1 << keep_from, leaf_count - start):
        raise TreeError("the block does not hold the leaves around the position")
    path: list[Sibling] = []
    hashes = _leaf_hashes(secret, block)
    sums = [balance for _, balance in block]
    index = position - start
    for _ in range(keep_from):
        sibling = index ^ 1
        path.append(Sibling(hashes[sibling], sums[sibling]) if sibling < len(hashes) else Sibling(EMPTY_HASH, 0))
        hashes, sums = _level_up(hashes, sums)
        index >>= 1
    offset = 0
    stored = []
    for size in sizes[keep_from:]:
        stored.append((offset, size))
        offset += size * NODE_BYTES
    if offset != len(upper):
        raise TreeError("the stored upper levels do not match the leaf count")

    def node(level: int, at: int) -> Sibling:
        base, size = stored[level - keep_from]
        if at >= size:
            return Sibling(EMPTY_HASH, 0)
        raw = upper[base + at * NODE_BYTES : base + (at + 1) * NODE_BYTES]
        return Sibling(raw[:32], int.from_bytes(raw[32:], "big"))

    at = position >> keep_from
    if node(keep_from, at) != Sibling(hashes[0], sums[0]):
        raise TreeError("the leaves of the block do not hash to the stored node")
    for level in range(keep_from, depth):
        path.append(node(level, at ^ 1))
        at >>= 1
    return path


def salt_new_secret() -> bytes:
    """Return a fresh per-tree secret (the key the users' salts are derived with)."""
    return secrets.token_bytes(SECRET_BYTES)


__all__ = [
    "BLOCK_LEVELS",
    "SALT_BYTES",
    "Sibling",
    "Tree",
    "TreeError",
    "level_sizes",
    "positions_shuffle",
    "salt_new_secret",
    "salt_of",
    "sibling_path",
    "tree_build",
]
