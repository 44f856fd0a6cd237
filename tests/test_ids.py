from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from wallet_project.ids import business_no, business_nos

MOMENT = datetime(2024, 1, 1, 8, 30, 15, 123456, tzinfo=UTC)


def test_numbers_of_one_instant_in_one_process_never_collide():
    # A ledger batch books hundreds of flows with one timestamp.
    numbers = [business_no(prefix="F", now=MOMENT) for _ in range(100_000)]

    assert len(set(numbers)) == len(numbers)
    assert {len(n) for n in numbers} == {32}  # the seed's varchar(32)
    assert all(n.startswith("F20240101083015123456") and n[1:].isdigit() for n in numbers)


def test_refuses_a_prefix_that_would_overflow_the_column():
    with pytest.raises(ValueError, match="one letter"):
        business_no(prefix="FL")


def test_a_forked_worker_draws_its_own_sequence():
    # Celery's prefork pool imports this module, then forks its workers.
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        os.write(writer, business_no(prefix="F", now=MOMENT)[21:26].encode())
        os._exit(0)
    os.waitpid(child, 0)
    in_child = os.read(reader, 5).decode()
    in_parent = {business_no(prefix="F", now=MOMENT)[21:26] for _ in range(3)}

    assert in_child not in in_parent


def test_bulk_numbers_have_the_same_shape_and_never_collide():
    numbers = business_nos(prefix="S", now=MOMENT, count=100_000)

    assert len(set(numbers)) == 100_000
    assert {len(n) for n in numbers} == {32}
    assert all(n.startswith("S20240101083015123456") and n[1:].isdigit() for n in numbers)
    assert set(numbers).isdisjoint(business_no(prefix="S", now=MOMENT) for _ in range(1000))
    with pytest.raises(ValueError, match="one letter"):
        business_nos(prefix="SX", now=MOMENT, count=1)
