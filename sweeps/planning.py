"""
The sweep planner of an account chain (ETH, TRON): which deposit addresses to sweep now.

Database only, no node: a deposit address is a candidate for a coin when the deposits of that
coin credited to it since its last sweep (credited total - the total its last job was planned at)
reach the coin's sweep_threshold and, for the chain's own coin, more than the sweep would cost in
fees (`cost`, read from the node once per run by the caller). What is below stays and
grows with the next deposits. One open job per address: its nonce and balance belong to that job,
so an address with two coins past their thresholds gets the chain's own coin first and the token
on a later run (its gas top-up then lands on an address already emptied of its ether).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Max

from addresses import selectors as addresses_selectors
from coins.models import CoinConfig, Switch
from recharges import selectors as recharges_selectors
from sweeps.common import hot_target, open_key, paused_coins
from sweeps.models import SweepJob, SweepStatus
from wallet_project.ids import business_no

ACCOUNT_CHAINS = ("ETH", "TRON")
_COLUMNS = (
    "job_no", "chain_id", "coin_id", "address_id", "from_address", "to_address", "status", "reason",
    "planned_amount", "credited_mark", "inputs", "topup_from", "topup_raw", "raw", "attempts", "open_key",
    "create_time", "update_time",
)  # fmt: skip
# The columns are the constants above, never input: only the row values are parameters.
INSERT_JOB = f"INSERT {{ignore}} INTO sweep_job ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))})"  # noqa: S608


def sweep_coins(*, chain_id: str) -> list[CoinConfig]:
    """The chain's enabled coins with a sweep threshold and not paused, its own coin first."""
    paused = paused_coins()
    coins = CoinConfig.objects.filter(chain_id=chain_id, status=Switch.ENABLED, sweep_threshold__isnull=False)
    return sorted((c for c in coins if c.coin_id not in paused), key=lambda c: (not c.is_native, c.coin_id))


def sweeps_plan(
    *, chain_id: str, now: datetime, cost: Mapping[str, Decimal] | None = None, to_address: str | None = None
) -> int:
    """
    Plan the sweeps of an account chain's deposit addresses; return how many jobs were created.

    cost: {coin_id: what sweeping it costs now, in the coin} for the chain's own coin (skipped when
    the unswept amount is not above it). Jobs are created PLANNED in one insert that ignores the
    addresses another planner took meanwhile (the unique open_key).
    """
    coins = sweep_coins(chain_id=chain_id)
    if not coins:
        return 0
    target = to_address or hot_target(chain_id=chain_id)
    by_coin = {c.coin_id: c for c in coins}
    ids = addresses_selectors.deposit_address_ids(chain_id=chain_id)
    # The credited total each (address, coin) was last planned at: failed jobs do not count (what
    # they did not move is planned again); skipped ones do (left to grow until more arrives).
    marks = {
        (address_id, coin_id): mark
        for address_id, coin_id, mark in SweepJob.objects.filter(chain_id=chain_id, address__isnull=False)
        .exclude(status=SweepStatus.FAILED)
        .values_list("address_id", "coin_id")
        .annotate(mark=Max("credited_mark"))
        .values_list("address_id", "coin_id", "mark")
        .order_by()
    }
    busy = set(SweepJob.objects.filter(chain_id=chain_id, open_key__isnull=False).values_list("address_id", flat=True))
    order = {coin.coin_id: rank for rank, coin in enumerate(coins)}
    best: dict[int, tuple[int, str, Decimal, Decimal, str]] = {}
    for address, coin_id, total in recharges_selectors.credited_totals(coin_ids=by_coin):
        address_id = ids.get(address)
        if address_id is None or address_id in busy:
            continue
        coin = by_coin[coin_id]
        unswept = total - marks.get((address_id, coin_id), Decimal(0))
        if unswept < coin.sweep_threshold:
            continue
        if cost is not None and coin_id in cost and unswept <= cost[coin_id]:
            continue  # worth less than it costs to sweep: left to grow
        rank = order[coin_id]
        if address_id not in best or rank < best[address_id][0]:
            best[address_id] = (rank, coin_id, unswept, total, address)
    # One multi-row INSERT IGNORE per chunk (executemany): a job per address at tens of thousands a
    # second; an address another planner took meanwhile is skipped by its unique open_key.
    stamp = connection.ops.adapt_datetimefield_value(now)
    rows = [
        (
            business_no(prefix="S", now=now),
            chain_id,
            coin_id,
            address_id,
            address,
            target,
            SweepStatus.PLANNED.value,
            "",
            unswept,
            total,
            0,
            "",
            "",
            "",
            0,
            open_key(chain_id=chain_id, address=address),
            stamp,
            stamp,
        )
        for address_id, (_, coin_id, unswept, total, address) in best.items()
    ]
    created = 0
    for start in range(0, len(rows), 5000):
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            ignore = "IGNORE" if connection.vendor == "mysql" else "OR IGNORE"
            cursor.executemany(INSERT_JOB.format(ignore=ignore), rows[start : start + 5000])
            created += max(cursor.rowcount, 0)
    return created
