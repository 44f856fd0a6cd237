"""Reads of the risk controls: breakers, the blacklist, users' address books, proposals."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from controls.models import (
    AddressBookEntry,
    AddressBookPolicy,
    BlacklistAddress,
    ChangeStatus,
    CoinBreaker,
    SettingsChange,
)

# --- breakers --------------------------------------------------------------------------------------


def breaker_tripped(*, coin_id: str) -> bool:
    """Return whether the coin's circuit breaker is tripped (a coin never tripped has no row)."""
    return CoinBreaker.objects.using("default").filter(coin_id=coin_id, tripped=True).exists()


def breakers_tripped(*, coin_ids: Iterable[str] | None = None) -> set[str]:
    """Return the coin ids, among coin_ids (default: all), whose breaker is tripped."""
    rows = CoinBreaker.objects.using("default").filter(tripped=True)
    if coin_ids is not None:
        rows = rows.filter(coin_id__in=list(coin_ids))
    return set(rows.values_list("coin_id", flat=True))


def breaker_list() -> QuerySet[CoinBreaker]:
    """Return every breaker ever tripped, tripped ones first."""
    return CoinBreaker.objects.select_related("tripped_by", "cleared_by").order_by("-tripped", "coin_id")


def breaker_get(*, coin_id: str) -> CoinBreaker | None:
    return CoinBreaker.objects.filter(coin_id=coin_id).first()


# --- blacklist -------------------------------------------------------------------------------------


def blacklist_hit(*, chain_id: str, address: str) -> BlacklistAddress | None:
    """Return the blacklist entry of this address of this chain, or None (read from the primary)."""
    return BlacklistAddress.objects.using("default").filter(chain_id=chain_id, address=address).first()


def blacklist_hits(*, pairs: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
    """Return which (chain_id, address) pairs are blacklisted, in one query."""
    if not pairs:
        return set()
    wanted = set(pairs)
    rows = BlacklistAddress.objects.filter(address__in={address for _, address in wanted}).values_list(
        "chain_id", "address"
    )
    return {row for row in rows if row in wanted}


# --- address books ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BookSwitch:
    """A user's "address book only" switch at one moment."""

    book_only: bool  # in force now
    release_at: datetime | None  # when a requested switch-off takes effect (None: none requested)


def book_switch(*, user_id: int, now: datetime) -> BookSwitch:
    """Return whether only the user's address book may be withdrawn to at now."""
    policy = AddressBookPolicy.objects.using("default").filter(user_id=user_id).first()
    if policy is None or not policy.book_only:
        return BookSwitch(book_only=False, release_at=None)
    if policy.release_at is not None and now >= policy.release_at:
        return BookSwitch(book_only=False, release_at=policy.release_at)
    return BookSwitch(book_only=True, release_at=policy.release_at)


def book_only_users(*, user_ids: Collection[int]) -> set[int]:
    """Return which of these users have their "address book only" switch on or being released (one
    query, from the primary); book_switch says whether it holds now."""
    if not user_ids:
        return set()
    rows = AddressBookPolicy.objects.using("default").filter(user_id__in=set(user_ids), book_only=True)
    return set(rows.values_list("user_id", flat=True))


def book_entry(*, user_id: int, chain_id: str, address: str) -> AddressBookEntry | None:
    return (
        AddressBookEntry.objects.using("default")
        .filter(user_id=user_id, chain_id=chain_id, address=address)
        .order_by("id")
        .first()
    )


def book_list(*, user_id: int, chain_id: str | None = None) -> QuerySet[AddressBookEntry]:
    """Return the user's address book, newest first."""
    rows = AddressBookEntry.objects.filter(user_id=user_id)
    if chain_id is not None:
        rows = rows.filter(chain_id=chain_id)
    return rows.order_by("-id")


# --- proposals -------------------------------------------------------------------------------------


def changes_pending() -> QuerySet[SettingsChange]:
    """Return the proposals waiting for a second person, oldest first."""
    return SettingsChange.objects.filter(status=ChangeStatus.PENDING).order_by("proposed_at", "id")
