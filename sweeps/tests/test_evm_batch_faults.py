"""
A run's ether sweeps in chunks (sweeps.native_batch) under faults, on a real EVM dev node (ganache)
and MariaDB: one address of a chunk that cannot be signed, and a batched send whose answer is lost
or comes back garbled on the way (a faulty link in front of the node, not a stand-in for it).
Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from addresses.models import WalletAddress
from chains.evm import EvmAdapter
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepStatus
from sweeps.tests.conftest import deposit_addresses
from sweeps.tests.test_evm import ONE_ETH, deposits_make, eth_setup, sweep_until_settled  # noqa: F401
from wallet_project.testing import race

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def test_one_address_of_a_chunk_that_cannot_be_signed_waits_alone_and_the_others_are_swept(
    eth_setup, evm_node, evm_adapter
):
    addresses = deposit_addresses("ETH", 4, prefix="badkey")
    deposits_make(evm_node, evm_adapter, addresses, eth={i: ONE_ETH // 2 + i for i in range(4)}, usdt={})
    bad = addresses[2]
    # Its row's path tampered with: the key derived from it is another address's, never signed with.
    path = bad.derivation_path or ""
    head, _, last = path.rpartition("/")
    WalletAddress.objects.filter(id=bad.id).update(derivation_path=f"{head}/{int(last) + 1000}")

    run = sweeps_services.sweeps_run(chain_id="ETH", adapter=evm_adapter)

    jobs = {j.from_address: j for j in SweepJob.objects.all()}
    assert run.signed == 3 and run.broadcast == 3
    assert jobs[bad.address].status == SweepStatus.PLANNED and jobs[bad.address].nonce is None
    assert jobs[bad.address].reason == f"SignerError: The key of {bad.address} does not match its address."
    assert not NonceCursor.objects.filter(address__iexact=bad.address, next_nonce__gt=0).exists()
    good = [a for a in addresses if a.id != bad.id]
    assert {jobs[a.address].status for a in good} == {SweepStatus.BROADCAST}
    assert {jobs[a.address].nonce for a in good} == {0}
    evm_node.mine(1)
    assert [evm_adapter.mined_count(a.address) for a in addresses] == [1, 1, 0, 1]
    assert evm_adapter.balance(bad.address) == ONE_ETH // 2 + 2  # left where it is, nothing signed for it


class _Link:
    """An HTTP relay in front of the node that may change a batched send's answer on its way back."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.garble: Callable[[list[dict]], object] | None = None
        self.sends = 0
        link = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = requests.post(
                    link.upstream, data=body, headers={"Content-Type": "application/json"}, timeout=30
                ).content
                request = json.loads(body)
                sends = isinstance(request, list) and request and request[0]["method"] == "eth_sendRawTransaction"
                if sends:
                    link.sends += 1
                if sends and link.garble is not None:
                    garbled = link.garble(json.loads(answer))
                    answer = garbled if isinstance(garbled, bytes) else json.dumps(garbled).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def link(evm_node) -> Iterator[_Link]:
    relay = _Link(evm_node.url)
    try:
        yield relay
    finally:
        relay.server.shutdown()


GARBLES = {
    "lost": lambda answers: b"<html>502 Bad Gateway</html>",
    "reversed": lambda answers: list(reversed(answers)),
    "duplicate_id": lambda answers: [answers[0], *answers[:-1]],
    "renumbered": lambda answers: [{**a, "id": a["id"] + 1000} for a in answers],
}


@pytest.mark.parametrize("garble", sorted(GARBLES))
def test_a_batched_send_whose_answer_is_lost_or_garbled_sends_each_sweep_once(
    garble, eth_setup, evm_node, evm_adapter, link
):
    hot, _ = eth_setup
    addresses = deposit_addresses("ETH", 5, prefix=f"garble{garble}")
    deposits_make(evm_node, evm_adapter, addresses, eth={i: ONE_ETH // 2 + i for i in range(5)}, usdt={})
    faulty = EvmAdapter(url=link.url, connect_timeout=1, read_timeout=10)
    link.garble = GARBLES[garble]

    run = sweeps_services.sweeps_run(chain_id="ETH", adapter=faulty)

    assert link.sends == 1 and run.signed == 5
    jobs = list(SweepJob.objects.all())
    if garble == "reversed":  # out of order: matched by id, each handled as sent
        assert run.broadcast == 5 and {j.status for j in jobs} == {SweepStatus.BROADCAST}
    else:  # nothing known of any: each kept SIGNED with why, sent again by the next run
        assert run.broadcast == 0 and {j.status for j in jobs} == {SweepStatus.SIGNED}
        assert all(j.reason.startswith("ChainError: ") for j in jobs)
    link.garble = None
    sweep_until_settled(evm_node, evm_adapter)
    jobs = list(SweepJob.objects.all())
    assert {j.status for j in jobs} == {SweepStatus.CONFIRMED} and len(jobs) == 5
    assert all(evm_adapter.mined_count(a.address) == 1 for a in addresses)  # each sent once
    assert evm_adapter.balance(hot.address) == sum(int(j.amount * ONE_ETH) for j in jobs)


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_plan_sign_and_send_each_sweep_once(eth_setup, evm_node, evm_adapter):
    # Both plan the same 120 addresses at once (their inserts may deadlock), then race for the chunks.
    hot, _ = eth_setup
    addresses = deposit_addresses("ETH", 120, prefix="twice")
    deposits_make(evm_node, evm_adapter, addresses, eth={i: ONE_ETH // 4 + i for i in range(120)}, usdt={})
    runs = []

    def worker() -> None:
        adapter = EvmAdapter(url=evm_node.url, connect_timeout=1, read_timeout=10)
        runs.append(sweeps_services.sweeps_run(chain_id="ETH", adapter=adapter))

    crashes = race(worker)

    assert crashes == []
    assert sum(r.signed for r in runs) == 120  # each signed by one of them
    assert SweepJob.objects.count() == 120  # planned once
    sweep_until_settled(evm_node, evm_adapter)
    jobs = list(SweepJob.objects.all())
    assert {j.status for j in jobs} == {SweepStatus.CONFIRMED} and {j.nonce for j in jobs} == {0}
    assert all(evm_adapter.mined_count(a.address) == 1 for a in addresses)
    assert evm_adapter.balance(hot.address) == sum(int(j.amount * ONE_ETH) for j in jobs)
