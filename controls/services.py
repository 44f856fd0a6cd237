"""
Writes of the blacklist and of users' address books (the breakers are in controls.breakers, the
four-eyes proposals in controls.proposals).

The blacklist changes only through approved proposals: an addition (from the admin, or a whole
file from `blacklist_import`) or a removal is proposed by one staff member and applied when
another approves it. A user's address book is theirs to change at once, but a new entry can be
withdrawn to only after RISK_ADDRESS_BOOK_COOLING_SECONDS, and switching "address book only" off
takes that long too (switching it on is immediate).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from addresses.validation import InvalidAddress, address_validate
from coins import selectors as coins_selectors
from controls import proposals
from controls import selectors as controls_selectors
from controls.models import AddressBookEntry, AddressBookPolicy, BlacklistAddress, SettingsChange
from wallet_project.errors import Conflict, NotFound, WalletError

logger = logging.getLogger(__name__)

BLACKLIST_ADD = "blacklist_add"
BLACKLIST_REMOVE = "blacklist_remove"
BLACKLIST_PERMISSION = "controls.manage_blacklist"


# --- blacklist -------------------------------------------------------------------------------------


class BadBlacklistLine(WalletError):
    code = "bad_blacklist_line"


@dataclass(frozen=True)
class BlacklistLine:
    chain_id: str
    address: str
    reason: str


def blacklist_entry_check(*, chain_id: str, address: str, reason: str) -> BlacklistLine:
    """
    Return the entry with its address in the chain's canonical form.

    :raises WalletError: an unknown chain (field chain_id), an address not valid on it (field
        address), or a reason longer than 255 characters.
    """
    chain = (chain_id or "").strip().upper()
    if not coins_selectors.coin_list(enabled_only=False).filter(chain_id=chain).exists():
        raise WalletError(f"No coin runs on chain {chain_id[:32]!r}.", field="chain_id", code="unknown_chain")
    try:
        canonical = address_validate(chain, address)
    except InvalidAddress as bad:
        raise InvalidAddress(bad.message, field="address") from None
    text = (reason or "").strip()
    if len(text) > 255:
        raise WalletError("A reason has at most 255 characters.", field="reason")
    return BlacklistLine(chain_id=chain, address=canonical, reason=text)


def blacklist_lines_parse(lines: Iterable[str]) -> list[BlacklistLine]:
    """
    Parse an import file: one `CHAIN,ADDRESS[,REASON]` per line; blank lines and `#` comments skipped.

    Every line is checked before anything is returned: one bad line refuses the whole file.
    :raises BadBlacklistLine: naming the first bad line's number and what is wrong with it.
    """
    entries: dict[tuple[str, str], BlacklistLine] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        chain, sep, rest = line.partition(",")
        address, _, reason = rest.partition(",")
        if not sep or not address.strip():
            raise BadBlacklistLine(f"line {number}: expected CHAIN,ADDRESS[,REASON], got {line[:60]!r}")
        try:
            entry = blacklist_entry_check(chain_id=chain, address=address.strip(), reason=reason)
        except WalletError as bad:
            raise BadBlacklistLine(f"line {number}: {bad.message}") from None
        entries.setdefault((entry.chain_id, entry.address), entry)
    return list(entries.values())


def blacklist_propose_add(
    *, entries: Sequence[BlacklistLine], user: AbstractBaseUser, reason: str, now: datetime | None = None
) -> SettingsChange:
    """
    Propose adding addresses to the blacklist; they refuse withdrawals once a second person approves.

    Addresses listed already are left out of the proposal.
    :raises WalletError: nothing to add (every address is listed already).
    :raises NotPermitted, ProposalPending: as proposals.change_propose_in.
    """
    moment = now or timezone.now()
    with transaction.atomic(durable=True):
        listed = controls_selectors.blacklist_hits(pairs={(e.chain_id, e.address) for e in entries})
        new = [e for e in entries if (e.chain_id, e.address) not in listed]
        if not new:
            raise WalletError("Every address given is blacklisted already.", field="address", code="already_listed")
        rows = [[e.chain_id, e.address, e.reason or reason.strip()[:255]] for e in new]
        if len(new) == 1:
            target = f"{new[0].chain_id} {new[0].address}"
            summary = f"Blacklist {target}"
        else:
            digest = hashlib.sha256(repr(sorted(map(tuple, rows))).encode()).hexdigest()[:12]
            target = f"{len(new)} addresses {digest}"
            chains = ", ".join(sorted({e.chain_id for e in new}))
            summary = f"Blacklist {len(new)} addresses ({chains})"
        return proposals.change_propose_in(
            kind=BLACKLIST_ADD,
            target=target,
            summary=summary,
            before={"listed": []},
            after={"add": rows},
            reason=reason,
            user=user,
            now=moment,
        )


def blacklist_propose_remove(
    *, entry_ids: Sequence[int], user: AbstractBaseUser, reason: str, now: datetime | None = None
) -> SettingsChange:
    """
    Propose taking addresses off the blacklist; they stay listed until a second person approves.

    :raises WalletError: no such entries.
    :raises NotPermitted, ProposalPending: as proposals.change_propose_in.
    """
    moment = now or timezone.now()
    with transaction.atomic(durable=True):
        rows = list(BlacklistAddress.objects.filter(id__in=list(entry_ids)).order_by("id"))
        if not rows:
            raise WalletError("None of these addresses is blacklisted.", field="address", code="not_listed")
        listed = [[row.chain_id, row.address, row.reason] for row in rows]
        if len(rows) == 1:
            target = f"{rows[0].chain_id} {rows[0].address}"
        else:
            target = f"{len(rows)} addresses " + hashlib.sha256(repr(listed).encode()).hexdigest()[:12]
        return proposals.change_propose_in(
            kind=BLACKLIST_REMOVE,
            target=target,
            summary=f"Take {len(rows)} address(es) off the blacklist: "
            + ", ".join(f"{c} {a}" for c, a, _ in listed[:3])
            + (" …" if len(rows) > 3 else ""),
            before={"listed": listed},
            after={"remove": [[c, a] for c, a, _ in listed]},
            reason=reason,
            user=user,
            now=moment,
        )


def blacklist_add_apply(change: SettingsChange, approver: AbstractBaseUser, now: datetime) -> None:
    """The blacklist_add kind: list every address of the proposal not listed yet."""
    for chain_id, address, reason in change.after["add"]:
        try:
            with transaction.atomic():  # a savepoint: listed meanwhile by another proposal
                BlacklistAddress.objects.get_or_create(
                    chain_id=chain_id,
                    address=address,
                    defaults={
                        "reason": reason or change.reason[:255],
                        "proposed_by_id": change.proposed_by_id,
                        "approved_by_id": approver.pk,
                        "create_time": now,
                    },
                )
        except IntegrityError:
            continue
    logger.warning("blacklist: %s address(es) added by proposal #%s", len(change.after["add"]), change.pk)


def blacklist_remove_apply(change: SettingsChange, approver: AbstractBaseUser, now: datetime) -> None:
    """The blacklist_remove kind: unlist the proposal's addresses (if none is listed any more, it is stale)."""
    pairs = [(chain_id, address) for chain_id, address in change.after["remove"]]
    rows = [
        row
        for row in BlacklistAddress.objects.select_for_update().filter(address__in={a for _, a in pairs}).order_by("id")
        if (row.chain_id, row.address) in set(pairs)
    ]
    if not rows:
        raise proposals.ProposalStale("none of these addresses is blacklisted any more")
    BlacklistAddress.objects.filter(id__in=[row.id for row in rows]).delete()
    logger.warning("blacklist: %s address(es) removed by proposal #%s", len(rows), change.pk)


# --- address books ---------------------------------------------------------------------------------


def cooling() -> timedelta:
    return timedelta(seconds=settings.RISK_ADDRESS_BOOK_COOLING_SECONDS)


@transaction.atomic(durable=True)
def book_entry_add(
    *, user_id: int, coin_id: str, address: str, label: str = "", now: datetime | None = None
) -> AddressBookEntry:
    """
    Save an address to the user's book for every coin of the coin's chain; usable after the cooling period.

    :raises UnknownCoin: no such coin.
    :raises InvalidAddress: not an address of the coin's chain (field address).
    :raises Conflict: the address is in the book already (address_book_duplicate).
    """
    moment = now or timezone.now()
    coin = coins_selectors.coin_get(coin_id=coin_id)
    try:
        canonical = address_validate(coin.chain_id, address)
    except InvalidAddress as bad:
        raise InvalidAddress(bad.message, field="address") from None
    if controls_selectors.book_entry(user_id=user_id, chain_id=coin.chain_id, address=canonical) is not None:
        raise Conflict("This address is in your address book already.", field="address", code="address_book_duplicate")
    try:
        with transaction.atomic():
            entry = AddressBookEntry.objects.create(
                user_id=user_id,
                chain_id=coin.chain_id,
                address=canonical,
                label=(label or "").strip()[:64],
                create_time=moment,
                usable_at=moment + cooling(),
            )
    except IntegrityError:
        raise Conflict(
            "This address is in your address book already.", field="address", code="address_book_duplicate"
        ) from None
    logger.info(
        "address book of user %s: %s %s added, usable at %s", user_id, coin.chain_id, canonical, entry.usable_at
    )
    return entry


@transaction.atomic(durable=True)
def book_entry_remove(*, user_id: int, entry_id: int) -> None:
    """
    Remove an entry of the user's book (saved again later, it cools again).

    :raises NotFound: no such entry of this user.
    """
    deleted, _ = AddressBookEntry.objects.filter(id=entry_id, user_id=user_id).delete()
    if not deleted:
        raise NotFound(f"No address book entry {entry_id}.")


@transaction.atomic(durable=True)
def book_switch_set(*, user_id: int, book_only: bool, now: datetime | None = None) -> controls_selectors.BookSwitch:
    """
    Switch "address book only" on (at once) or off (after the cooling period; on until then).

    Asking to switch off again while a switch-off is pending keeps its original time.
    """
    moment = now or timezone.now()
    try:
        with transaction.atomic():
            AddressBookPolicy.objects.get_or_create(user_id=user_id, defaults={"update_time": moment})
    except IntegrityError:
        pass
    policy = AddressBookPolicy.objects.select_for_update().get(user_id=user_id)
    in_force = controls_selectors.book_switch(user_id=user_id, now=moment).book_only
    if book_only:
        policy.book_only, policy.release_at = True, None
    elif not in_force:
        policy.book_only, policy.release_at = False, None
    elif policy.release_at is None:
        policy.release_at = moment + cooling()
    policy.update_time = moment
    policy.save(update_fields=["book_only", "release_at", "update_time"])
    logger.info("address book switch of user %s: on=%s release_at=%s", user_id, policy.book_only, policy.release_at)
    return controls_selectors.book_switch(user_id=user_id, now=moment)
