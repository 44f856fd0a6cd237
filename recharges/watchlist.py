"""
The scanner's in-process watch list: {match_key: (user_id, address)} per chain.

It also holds the exchange's own hot, change and cold addresses, with user_id None: the adapter
then returns the transfers to them, which the UTXO set records (BTC), treasury receipts record
when they come from outside (recharges.treasury) and deposit matching skips. They are refreshed
like deposit addresses (by id, and by create_time within the look-back), so a change address a
payout created is watched before its change is mined.

Loaded once per process, then refreshed on every tick with one query for what changed: rows with
a higher id than seen, or assigned recently (a pool address keeps its old id when a user gets it;
the look-back margin covers an assignment that committed late). A full reload every
SCAN_WATCH_FULL_RELOAD_SECONDS catches anything else (an address taken back).

The scanner refreshes AFTER fetching a batch of blocks: a user learns an address only once its
assignment committed, so any payment in a fetched block went to an address the refresh sees.

The incremental refresh sees a pool address handed to a user only if its assign_time is within
SCAN_WATCH_LOOKBACK_SECONDS of the previous refresh. An assignment that commits later than that
(a long transaction, clock skew between writers) is first seen by the next full reload, and a
payment to it may sit in a block scanned in between with a list that lacked it. So a full reload
that finds keys the list lacked asks for a rescan (watchlist_rescan_take) from the lowest cursor
height since the previous full reload (a reorg may have moved it back): no payment to the late
address can be in an older block, since its owner learned it only after the assignment committed,
which was after that reload read the table. The scanner runs that rescan (idempotent) after its
batches, a bounded number of blocks at a time.

Left: this bookkeeping lives in the scanner process. If the process restarts between a late
commit and the next full reload, the new process loads the address in full but does not know the
blocks the old one scanned without it; ops run deposits_rescan_range (the admin's rescan action)
over them. It takes an assignment committing SCAN_WATCH_LOOKBACK_SECONDS after it was stamped.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from addresses import selectors as addresses_selectors
from chains.base import ChainAdapter, ChainError
from recharges.matching import Watch

logger = logging.getLogger(__name__)


@dataclass
class _ChainWatch:
    keys: Watch = field(default_factory=dict)
    max_id: int = 0
    refreshed_at: datetime | None = None
    loaded_monotonic: float = 0.0
    # Bumped whenever a key is added or changes owner.
    version: int = 0
    # The lowest cursor height the scanner reported since the last full reload read the table: a
    # reorg may move the cursor below where it stood at the reload, and blocks above it are then
    # scanned again with this list.
    low_height: int | None = None


_lock = threading.Lock()
_watches: dict[str, _ChainWatch] = {}
# chain_id -> the height from which blocks must be read again for keys a full reload found late.
_rescans: dict[str, int] = {}


def watchlist_reset() -> None:
    """Forget every cached watch list and pending rescan (the next call reloads from the database)."""
    with _lock:
        _watches.clear()
        _rescans.clear()


def watchlist_rescan_request(*, chain_id: str, from_height: int) -> None:
    """Ask for blocks from from_height on to be read again (merged with any pending request)."""
    with _lock:
        _rescan_merge(chain_id, from_height)


def _rescan_merge(chain_id: str, from_height: int) -> None:
    # Under _lock: a pending rescan only ever widens.
    _rescans[chain_id] = min(from_height, _rescans.get(chain_id, from_height))


def watchlist_rescan_take(*, chain_id: str) -> int | None:
    """Return and clear the height a rescan of this chain must start from, if one is due."""
    with _lock:
        return _rescans.pop(chain_id, None)


def _add(watch: _ChainWatch, rows: list[tuple[int, str, int | None]], adapter: ChainAdapter) -> None:
    for row_id, address, user_id in rows:
        try:
            key = adapter.match_key(address)
        except (ChainError, ValueError, TypeError):
            # A stored address the chain cannot parse can never receive anything: skip it.
            continue
        owner = (user_id, address)
        if watch.keys.get(key) != owner:
            watch.keys[key] = owner
            watch.version += 1
        watch.max_id = max(watch.max_id, row_id)


def watchlist_get(*, chain_id: str, adapter: ChainAdapter, height: int | None = None) -> tuple[Watch, int]:
    """
    Return the chain's watch list refreshed from the database (one query, or a full reload),
    and its version: a caller that filtered blocks with an older version must read them again.

    The scanner passes its cursor height: the lowest since a full reload bounds the rescan the
    next full reload may ask for (module docstring).
    """
    # The wall clock, not a caller's `now`: it is compared with assign_time written by the database's writers.
    started = timezone.now()
    with _lock:
        watch = _watches.get(chain_id)
        full = watch is None or time.monotonic() - watch.loaded_monotonic > settings.SCAN_WATCH_FULL_RELOAD_SECONDS
        previous = watch
        if full:
            watch = _ChainWatch(
                loaded_monotonic=time.monotonic(),
                version=(previous.version + 1 if previous else 0),
                low_height=height if height is not None else (previous.low_height if previous else None),
            )
            since, after_id = None, None
        else:
            assert watch is not None
            since = (watch.refreshed_at or started) - timedelta(seconds=settings.SCAN_WATCH_LOOKBACK_SECONDS)
            after_id = watch.max_id
        # Users' deposit addresses and the exchange's own ones, in one query: the own ones' outputs
        # make the UTXO set (BTC), and money arriving at them from outside is a treasury receipt
        # (recharges.treasury), on every chain.
        watched = addresses_selectors.watched_addresses(chain_id=chain_id, since=since, after_id=after_id)
        if not full and height is not None and (watch.low_height is None or height < watch.low_height):
            watch.low_height = height
        rows = list(watched.values_list("id", "address", "user_id"))
        _add(watch, rows, adapter)
        watch.refreshed_at = started
        _watches[chain_id] = watch
        if full and previous is not None and previous.low_height is not None:
            late = [key for key, owner in watch.keys.items() if previous.keys.get(key) != owner]
            if late:
                logger.warning(
                    "watch list of %s: full reload found %s address(es) the refreshes missed; rescanning from %s",
                    chain_id,
                    len(late),
                    previous.low_height,
                )
                _rescan_merge(chain_id, previous.low_height)
        return watch.keys, watch.version
