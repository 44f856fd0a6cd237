"""
The scanner's in-process watch list: {match_key: (user_id, address)} per chain.

Loaded once per process, then refreshed on every tick with one query for what changed: rows with
a higher id than seen, or assigned recently (a pool address keeps its old id when a user gets it;
the look-back margin covers an assignment that committed late). A full reload every
SCAN_WATCH_FULL_RELOAD_SECONDS catches anything else (an address taken back).

The scanner refreshes AFTER fetching a batch of blocks: a user learns an address only once its
assignment committed, so any payment in a fetched block went to an address the refresh sees.

Known gap: the incremental refresh sees a pool address handed to a user only if its assign_time
is within SCAN_WATCH_LOOKBACK_SECONDS of the previous refresh. An assignment that commits later
than that (a long transaction, clock skew between writers) is seen at the next full reload, and a
payment to it in a block scanned in between is not recorded until ops run deposits_rescan_range
over those blocks. Keep SCAN_WATCH_LOOKBACK_SECONDS well above any transaction's duration and the
writers' clock skew. (Planned: a full reload that finds new keys triggers that rescan itself from
the height at the previous full reload.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from addresses import selectors as addresses_selectors
from chains.base import ChainAdapter, ChainError
from recharges.matching import Watch


@dataclass
class _ChainWatch:
    keys: Watch = field(default_factory=dict)
    max_id: int = 0
    refreshed_at: datetime | None = None
    loaded_monotonic: float = 0.0
    # Bumped whenever a key is added or changes owner.
    version: int = 0


_lock = threading.Lock()
_watches: dict[str, _ChainWatch] = {}


def watchlist_reset() -> None:
    """Forget every cached watch list (the next call reloads from the database)."""
    with _lock:
        _watches.clear()


def _add(watch: _ChainWatch, rows: list[tuple[int, str, int]], adapter: ChainAdapter) -> None:
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


def watchlist_get(*, chain_id: str, adapter: ChainAdapter) -> tuple[Watch, int]:
    """
    Return the chain's watch list refreshed from the database (one query, or a full reload),
    and its version: a caller that filtered blocks with an older version must read them again.
    """
    # The wall clock, not a caller's `now`: it is compared with assign_time written by the database's writers.
    started = timezone.now()
    with _lock:
        watch = _watches.get(chain_id)
        full = watch is None or time.monotonic() - watch.loaded_monotonic > settings.SCAN_WATCH_FULL_RELOAD_SECONDS
        if full:
            watch = _ChainWatch(loaded_monotonic=time.monotonic(), version=(watch.version + 1 if watch else 0))
            assigned = addresses_selectors.deposit_addresses_assigned(chain_id=chain_id)
        else:
            assert watch is not None
            since = (watch.refreshed_at or started) - timedelta(seconds=settings.SCAN_WATCH_LOOKBACK_SECONDS)
            assigned = addresses_selectors.deposit_addresses_assigned(
                chain_id=chain_id, since=since, after_id=watch.max_id
            )
        rows = list(assigned.values_list("id", "address", "user_id"))
        _add(watch, rows, adapter)
        watch.refreshed_at = started
        _watches[chain_id] = watch
        return watch.keys, watch.version
