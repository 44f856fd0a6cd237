from __future__ import annotations

from datetime import UTC, datetime

import pytest

from wallet_project.ids import business_no


def test_numbers_of_one_instant_in_one_process_never_collide():
    # A ledger batch books hundreds of flows with one timestamp.
    moment = datetime(2024, 1, 1, 8, 30, 15, 123456, tzinfo=UTC)

    numbers = [business_no(prefix="F", now=moment) for _ in range(100_000)]

    assert len(set(numbers)) == len(numbers)
    assert {len(n) for n in numbers} == {32}  # the seed's varchar(32)
    assert all(n.startswith("F20240101083015123456") and n[1:].isdigit() for n in numbers)


def test_refuses_a_prefix_that_would_overflow_the_column():
    with pytest.raises(ValueError, match="one letter"):
        business_no(prefix="FL")
