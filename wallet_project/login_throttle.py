"""
Brute-force protection of the two logins (POST /api/v1/auth/token and the admin's login page).

Failed logins are counted per username and per client address in the default cache: Redis in
every deployed setting (REDIS_URL), so the counts are shared by all web workers and hosts; the
local-memory fallback of a bare development machine counts per process. A counter lives for
LOGIN_THROTTLE_WINDOW_SECONDS from the first failure it counts; while it is at its limit, logins
for that username, or from that address, are refused before any password is checked, until the
counter expires (the Retry-After). Counting uses Redis INCR, atomic across processes: parallel
guesses cannot slip past the limit as they can past a read-then-write count (DRF's rate throttles
keep a list of request times read and written back without a lock, and count every request
rather than failures).

Why two counters with different limits:
- per username (LOGIN_FAILURES_PER_USERNAME, default 10): stops guessing one account's password,
  from one address or from many. An existing account is counted by its id, so every spelling the
  database takes for its name ("ALICE", "alicé" under MariaDB's collation) counts as one. Anyone
  can lock an account this way for one window: the price of the protection, and why the limit is
  not lower.
- per address (LOGIN_FAILURES_PER_ADDRESS, default 100): stops one address from spraying a common
  password over many usernames. Many users can share an address (an office, a carrier's NAT),
  so the limit is ten times the username's: a refused attempt is not a failure and is not counted,
  so one locked account adds at most LOGIN_FAILURES_PER_USERNAME to its address's count, and the
  other users behind that address are refused only when ten accounts' worth of failures come
  from it within the window.
A success clears the username's counter (the owner got in), never the address's: a sprayer who
owns one account could otherwise reset it between rounds.

A lock-out raises a LOGIN_THROTTLED alert, one open alert per username or address.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import math
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.http import HttpRequest

from monitoring import services as monitoring_services
from monitoring.models import Severity

_PREFIX = "login-failures"


@dataclass(frozen=True)
class LoginAttempt:
    username: str
    address: str

    @classmethod
    def of(cls, request: HttpRequest, username: object) -> LoginAttempt:
        return cls(username=username if isinstance(username, str) else "", address=client_address(request))

    @functools.cached_property
    def account(self) -> tuple[int, str] | None:
        """(id, stored username) of the account this username logs in to, or None if it names none.

        Looked up as authentication does (an exact match under the column's collation): on
        MySQL/MariaDB "Alicé" and "alice " log in to alice, so their failures must count as hers.
        """
        users = get_user_model()
        if not self.username:
            return None
        return (
            users._default_manager.filter(**{users.USERNAME_FIELD: self.username})
            .order_by("pk")
            .values_list("pk", users.USERNAME_FIELD)
            .first()
        )


@dataclass(frozen=True)
class LoginLock:
    """Logins of an attempt's username or address are refused for retry_after more seconds."""

    by_address: bool
    retry_after: int

    @property
    def message(self) -> str:
        minutes = max(1, math.ceil(self.retry_after / 60))
        source = "from this address" if self.by_address else "for this username"
        return f"Too many failed logins {source}: try again in {minutes} minute{'s' if minutes > 1 else ''}."


def client_address(request: HttpRequest) -> str:
    """
    Return the client's address as the throttle counts it: an IPv4 address, or an IPv6 /64 network.

    Behind LOGIN_TRUSTED_PROXIES reverse proxies the client is the address the nearest trusted
    proxy saw, read from the right of X-Forwarded-For (entries further left are the client's to
    forge). An IPv6 client usually holds a whole /64, so it is counted as one.
    """
    raw = request.META.get("REMOTE_ADDR", "")
    proxies = settings.LOGIN_TRUSTED_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if proxies > 0 and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        if hops:
            raw = hops[-min(proxies, len(hops))]
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return raw[:64] or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def login_lock_find(attempt: LoginAttempt) -> LoginLock | None:
    """Return the lock on the attempt's username or address (the longer one), or None."""
    locks = []
    for key, limit, by_address in _counters(attempt):
        if limit > 0 and (cache.get(key) or 0) >= limit:
            locks.append(LoginLock(by_address=by_address, retry_after=_seconds_left(key)))
    return max(locks, key=lambda lock: lock.retry_after, default=None)


def login_failed(attempt: LoginAttempt) -> None:
    """Count a failed login against its username and address; alert the moment either reaches its limit."""
    window = settings.LOGIN_THROTTLE_WINDOW_SECONDS
    for key, limit, by_address in _counters(attempt):
        if limit <= 0:
            continue
        count = _increment(key, window)
        if count == limit:
            _alert(attempt=attempt, by_address=by_address, limit=limit, window=window)


def login_succeeded(attempt: LoginAttempt) -> None:
    """Forget the username's failures: its owner got in. The address's count stays."""
    cache.delete(_username_key(attempt))


def _counters(attempt: LoginAttempt) -> list[tuple[str, int, bool]]:
    return [
        (_username_key(attempt), settings.LOGIN_FAILURES_PER_USERNAME, False),
        (f"{_PREFIX}:address:{attempt.address}", settings.LOGIN_FAILURES_PER_ADDRESS, True),
    ]


def _username_key(attempt: LoginAttempt) -> str:
    # An existing account is counted by its id, whatever spelling the database took for its name
    # (case, accents, trailing spaces under MariaDB's collation); each spelling of its own would
    # multiply the guesses allowed. Names of no account are counted by their digest.
    account = attempt.account
    if account is not None:
        return f"{_PREFIX}:account:{account[0]}"
    return f"{_PREFIX}:user:{_username_digest(attempt)}"


def _username_digest(attempt: LoginAttempt) -> str:
    # Hashed: the key's length is bounded and a password typed into the username field is not kept in clear.
    return hashlib.sha256(attempt.username.strip().casefold().encode()).hexdigest()[:32]


def _increment(key: str, window: int) -> int:
    # add() sets the window's expiry only when the counter starts; incr() is atomic (Redis INCR).
    # If the counter expires between the two, start it again.
    for _ in range(3):
        cache.add(key, 0, timeout=window)
        try:
            return cache.incr(key)
        except ValueError:
            continue
    return 0


def _seconds_left(key: str) -> int:
    ttl = getattr(cache, "ttl", None)  # django-redis; the local-memory cache cannot tell
    left = ttl(key) if ttl is not None else None
    return max(1, int(left)) if left else settings.LOGIN_THROTTLE_WINDOW_SECONDS


def _alert(*, attempt: LoginAttempt, by_address: bool, limit: int, window: int) -> None:
    minutes = max(1, window // 60)
    if by_address:
        subject = f"address {attempt.address}"
        what = f"{limit} failed logins from address {attempt.address} within {minutes} min"
        todo = "a password-spraying attack, or many users behind one NAT: block the address upstream if it goes on"
    else:
        # Named only if such a user exists: an unknown "username" may be a password typed in the wrong field.
        account = attempt.account
        name = str(account[1])[:64] if account is not None else f"unknown username #{_username_digest(attempt)[:8]}"
        subject = f"user {name}"
        what = f"{limit} failed logins for {name} within {minutes} min (last from {attempt.address})"
        todo = "if the user did not mistype, the account is under attack: ask them to change their password"
    monitoring_services.alert_raise_alone(
        severity=Severity.WARNING,
        kind="LOGIN_THROTTLED",
        subject=subject[:128],
        message=f"{what}; further logins are refused for up to {minutes} min. {todo.capitalize()}.",
    )
