"""Nonce cursors of EVM sending addresses, given out many at a time (a run of sweeps)."""

from __future__ import annotations

import pytest
from django.db import transaction

from chains import services
from chains.models import NonceCursor

pytestmark = pytest.mark.django_db

AHEAD, BEHIND, NEW = "0x" + "a1" * 20, "0x" + "b2" * 20, "0x" + "c3" * 20


def test_gives_each_address_the_higher_of_its_cursor_and_the_node_and_moves_every_cursor_on():
    NonceCursor.objects.create(chain_id="ETH", address=AHEAD, next_nonce=5)  # ours, unmined yet
    NonceCursor.objects.create(chain_id="ETH", address=BEHIND, next_nonce=1)  # the node saw more since

    with transaction.atomic():
        nonces = services.nonces_allocate(chain_id="ETH", node_next={AHEAD: 2, BEHIND: 4, NEW: 3})

    assert nonces == {AHEAD: 5, BEHIND: 4, NEW: 3}
    assert dict(NonceCursor.objects.values_list("address", "next_nonce")) == {AHEAD: 6, BEHIND: 5, NEW: 4}
    with transaction.atomic():
        again = services.nonces_allocate(chain_id="ETH", node_next={AHEAD: 0, NEW: 0})
    assert again == {AHEAD: 6, NEW: 4}  # never given out twice, never moved back
    assert services.nonce_allocate(chain_id="ETH", address=NEW, node_next=0) == 5
