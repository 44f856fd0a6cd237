"""
What a hot address's payouts not in a block yet hold: the amounts they promise (its reserve) and the
transactions signed but not taken by a node yet (they hold their nonces). For every sender from a
hot address: payouts, their replacements, treasury transfers.
"""

from __future__ import annotations

from collections.abc import Collection

from coins import selectors as coins_selectors
from coins.models import CoinConfig
from withdrawals.models import Payout, PayoutStatus, PayoutTx, PayoutTxStatus, PayoutWithdrawal


def hot_reserved(*, coin: CoinConfig, from_address: str, mined_below: int | None) -> tuple[int, int]:
    """
    What the address's open payouts not in a block yet promise (native base units, this token's):
    for another sender from the same hot address (a treasury transfer) checking what it may spend.
    """
    return unmined_payouts(coin=coin, from_address=from_address, payout=None, mined_below=mined_below)


def hot_unsent(*, from_address: str, but: Collection[int] = ()) -> bool:
    """
    Whether a payout transaction of the address is signed but not taken by the node (it holds a
    nonce), leaving out the payout transactions `but` (a payout run's own, committed and about to be
    sent in its next batch).
    """
    query = PayoutTx.objects.filter(
        status=PayoutTxStatus.SIGNED, payout__status=PayoutStatus.OPEN, payout__from_address=from_address
    )
    if but:
        query = query.exclude(id__in=list(but))
    return query.exists()


def foreign_unmined(*, from_address: str, mined_below: int, below: int) -> list[int]:
    """
    The address's nonces from mined_below (the node's mined count) up to below (the next one handed
    out) that no open payout holds: another sender's transactions (a treasury transfer, a gas top-up)
    not in a block yet. What they spend shows in the node's balance only once they are mined, and no
    payout reserve counts it.
    """
    ours = set(
        Payout.objects.filter(
            status=PayoutStatus.OPEN, from_address=from_address, nonce__gte=mined_below, nonce__lt=below
        ).values_list("nonce", flat=True)
    )
    return [n for n in range(mined_below, below) if n not in ours]


def unmined_payouts(
    *, coin: CoinConfig, from_address: str, payout: Payout | None, mined_below: int | None = None
) -> tuple[int, int]:
    """
    What the address's other open payouts not in a block yet promise: (native base units, this token's).

    The node's balance (at its latest block) already excludes a payout in a block, so only the
    others count: signed but not sent, or sent and not mined. On EVM the node says which exactly:
    mined_below, its count of the address's transactions in the latest block (a payout whose nonce
    is below it is in a block, by one of its transactions), read with the balance, so a reorg that
    took a payout out of its block is seen at once, before the next confirmation run. Elsewhere a
    payout counts while withdrawals_confirm last saw none of its transactions in a block: one
    mined since still counts until that run (the reserve errs high, never low).
    """
    native_id = coins_selectors.chain_native_coin(chain_id=coin.chain_id).coin_id
    links = PayoutWithdrawal.objects.filter(
        payout__status=PayoutStatus.OPEN,
        payout__from_address=from_address,
        payout__coin_id__in={native_id, coin.coin_id},
    )
    if mined_below is not None:
        links = links.filter(payout__nonce__gte=mined_below)
    else:
        links = links.exclude(payout__txs__status=PayoutTxStatus.MINED)
    links = links.values_list("payout__coin_id", "amount")
    if payout is not None:
        links = links.exclude(payout_id=payout.id)
    coins = {c.coin_id: c for c in CoinConfig.objects.filter(coin_id__in={native_id, coin.coin_id})}
    native = token = 0
    for coin_id, amount in links:
        units = coins_selectors.amount_to_base_units(coin=coins[coin_id], amount=amount)
        if coin_id == native_id:
            native += units
        else:
            token += units
    return native, token
