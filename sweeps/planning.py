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

from addresses import selectors as addresses_selectors
from coins.models import CoinConfig, Switch
from recharges import selectors as recharges_selectors
from sweeps.common import hot_target, open_key, paused_coins
from sweeps.models import SweepJob, SweepStatus
from wallet_project import db
from wallet_project.ids import business_nos

ACCOUNT_CHAINS = ("ETH", "TRON")
JOB_COLUMNS = (
    "job_no", "chain_id", "coin_id", "address_id", "from_address", "to_address", "status", "reason",
    "planned_amount", "credited_mark", "inputs", "topup_from", "topup_raw", "raw", "attempts", "open_key",
    "create_time", "update_time",
)  # fmt: skip
# The columns are the constants above, never input: only the row values are parameters.
# Rows per insert statement (and transaction): ~2.5 MB of SQL, under max_allowed_packet.
CHUNK = 5000
# A job to insert: job_no, coin_id, address_id, address, planned amount, credited mark.
_Job = tuple[str, str, int, str, Decimal, Decimal]
_MARKS = ", ".join(["%s"] * len(JOB_COLUMNS))
INSERT_JOB = f"INSERT {{ignore}} INTO sweep_job ({', '.join(JOB_COLUMNS)}) VALUES ({_MARKS})"  # noqa: S608


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
    marks, busy = _marks_busy(chain_id=chain_id)
    order = {coin.coin_id: rank for rank, coin in enumerate(coins)}
    best: dict[int, tuple[int, str, Decimal, Decimal, str]] = {}
    zero = Decimal(0)
    for address, coin_id, total in recharges_selectors.credited_totals(coin_ids=by_coin):
        address_id = ids.get(address)
        if address_id is None or address_id in busy:
            continue
        coin = by_coin[coin_id]
        unswept = total - marks.get((address_id, coin_id), zero)
        if unswept < coin.sweep_threshold:
            continue
        if cost is not None and coin_id in cost and unswept <= cost[coin_id]:
            continue  # worth less than it costs to sweep: left to grow
        rank = order[coin_id]
        if address_id not in best or rank < best[address_id][0]:
            best[address_id] = (rank, coin_id, unswept, total, address)
    numbers = business_nos(prefix="S", now=now, count=len(best))
    jobs = [
        (number, coin_id, address_id, address, unswept, total)
        for number, (address_id, (_, coin_id, unswept, total, address)) in zip(numbers, best.items(), strict=True)
    ]
    insert = _jobs_insert_mysql if connection.vendor == "mysql" else _jobs_insert_portable
    created = 0
    for start in range(0, len(jobs), CHUNK):
        part = jobs[start : start + CHUNK]

        def chunk(part: list[_Job] = part) -> int:
            with transaction.atomic(durable=True):
                return insert(part, chain_id=chain_id, target=target, now=now)

        # Two planners inserting the same addresses at once: InnoDB may pick one as a deadlock
        # victim on the duplicate open_keys. Its chunk was rolled back whole; inserted again it
        # skips the addresses the other took (idempotent as a whole).
        created += db.retry_on_deadlock(chunk)
    return created


def _marks_busy(*, chain_id: str) -> tuple[dict[tuple[int, str], Decimal], set[int]]:
    """
    The credited total each (address, coin) was last planned at, and the addresses with an open job.

    Failed jobs do not count for the mark (what they did not move is planned again); skipped ones do
    (left to grow until more arrives). One read of the chain's address jobs folded here: MariaDB's
    GROUP BY would sort them all first.
    """
    marks: dict[tuple[int, str], Decimal] = {}
    busy: set[int] = set()
    failed = SweepStatus.FAILED.value
    rows = db.values_rows(
        SweepJob.objects.filter(chain_id=chain_id, address__isnull=False)
        .values_list("address_id", "coin_id", "credited_mark", "status", "open_key")
        .order_by()
    )
    for address_id, coin_id, mark, status, key in rows:
        if key is not None:
            busy.add(address_id)
        if status != failed:
            known = marks.get((address_id, coin_id))
            if known is None or mark > known:
                marks[(address_id, coin_id)] = mark
    return marks, busy


def _jobs_insert_mysql(jobs: list[_Job], *, chain_id: str, target: str,
                       now: datetime) -> int:  # fmt: skip
    """
    One multi-row INSERT IGNORE of the jobs, its VALUES written here: every constant column is
    escaped once, each row's text values by the driver's own escaping, its Decimals in plain
    notation (never an exponent, which MariaDB would read as a float). executemany would escape all
    18 values of every row; an address another planner took meanwhile is skipped by its open_key.
    """
    connection.ensure_connection()
    raw = connection.connection

    def text(value: str) -> str:
        return raw.string_literal(value.encode()).decode()

    stamp = text(str(connection.ops.adapt_datetimefield_value(now)))
    constants = f"{text(target)}, {text(SweepStatus.PLANNED.value)}, '', "
    tail = "0, '', '', '', 0, "
    chain = text(chain_id)
    coins: dict[str, str] = {}
    values = []
    for number, coin_id, address_id, address, unswept, total in jobs:
        coin = coins.get(coin_id) or coins.setdefault(coin_id, text(coin_id))
        quoted = text(address)
        values.append(
            f"({text(number)}, {chain}, {coin}, {int(address_id)}, {quoted}, {constants}{unswept:f}, {total:f}, "
            f"{tail}{text(open_key(chain_id=chain_id, address=address))}, {stamp}, {stamp})"
        )
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT IGNORE INTO sweep_job ({', '.join(JOB_COLUMNS)}) VALUES {', '.join(values)}")  # noqa: S608
        return max(cursor.rowcount, 0)


def _jobs_insert_portable(jobs: list[_Job], *, chain_id: str, target: str,
                          now: datetime) -> int:  # fmt: skip
    """The same insert through executemany (SQLite: INSERT OR IGNORE)."""
    stamp = connection.ops.adapt_datetimefield_value(now)
    rows = [
        (number, chain_id, coin_id, address_id, address, target, SweepStatus.PLANNED.value, "", unswept, total, 0, "",
         "", "", 0, open_key(chain_id=chain_id, address=address), stamp, stamp)
        for number, coin_id, address_id, address, unswept, total in jobs
    ]  # fmt: skip
    with connection.cursor() as cursor:
        cursor.executemany(INSERT_JOB.format(ignore="OR IGNORE"), rows)
        return max(cursor.rowcount, 0)
