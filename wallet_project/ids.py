"""Business numbers (flow_no, recharge_no, withdraw_no) in the seed's shape: prefix + date + digits."""

from __future__ import annotations

import secrets
from datetime import datetime

from django.utils import timezone


def business_no(*, prefix: str, now: datetime | None = None) -> str:
    """
    Return a new business number such as F20240101083015 + 10 random digits (25 characters).

    The random tail makes numbers from concurrent processes collide with negligible odds; the
    unique index on each column is the guarantee.
    """
    moment = now or timezone.now()
    return f"{prefix}{moment:%Y%m%d%H%M%S}{secrets.randbelow(10**10):010d}"
