"""
A run's ether sweeps signed, stored and sent in chunks (sweeps.native_batch) on a real EVM dev node
(ganache) and MariaDB: each answer of a batched send handled as a single send's, and a worker killed
between storing a chunk and sending it. Every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import pytest

from addresses import signer
from chains.base import UnsignedTx
from chains.devnodes import EVM_CHAIN_ID
from chains.testing import evm_adapter, evm_node  # noqa: F401
from monitoring.models import Alert
from sweeps import common as sweeps_common
from sweeps import services as sweeps_services
from sweeps.models import SweepJob, SweepStatus
from sweeps.tests.conftest import deposit_addresses
from sweeps.tests.test_evm import ONE_ETH, deposits_make, eth_setup, sweep_until_settled  # noqa: F401
from sweeps.tests.test_evm_killed import _worker

pytestmark = [pytest.mark.mysql, pytest.mark.slow]


def _send_from(evm_node, address: str, *, nonce: int, max_fee: int, tip: int) -> str:
    """Sign a transfer from one of our deposit addresses with its own key and give it to the node."""
    payload = {
        "to": evm_node.accounts[3].address, "value": 1, "gas": 21_000, "maxFeePerGas": max_fee,
        "maxPriorityFeePerGas": tip, "nonce": nonce, "chainId": EVM_CHAIN_ID, "type": 2,
    }  # fmt: skip
    signed = signer.signer_for("ETH")(UnsignedTx(chain_id="ETH", from_address=address, payload=payload))
    return evm_node.w3.provider.make_request("eth_sendRawTransaction", [signed.raw])["result"]


def test_each_answer_of_a_batched_send_is_handled_as_a_single_send_would_be(eth_setup, evm_node, evm_adapter):
    addresses = deposit_addresses("ETH", 4, prefix="batch")
    deposits_make(evm_node, evm_adapter, addresses, eth={i: ONE_ETH // 2 for i in range(4)}, usdt={})
    used, known, refused, plain = (a.address for a in addresses)
    seen = []

    def meanwhile(step: str) -> None:
        # After the chunk was stored, before its batched send: the node learns of other things.
        if step != "sweep.signed":
            return
        seen.append(step)
        jobs = {j.from_address: j for j in SweepJob.objects.all()}
        price, tip = jobs[used].max_fee_per_gas, jobs[used].max_priority_fee_per_gas
        _send_from(evm_node, used, nonce=0, max_fee=price * 2, tip=tip * 2)  # another transaction took nonce 0
        evm_node.w3.provider.make_request("eth_sendRawTransaction", [jobs[known].raw])  # another broadcaster
        evm_node.mine(1)
        # The address's ether gone (ganache sets it): the node refuses ours for want of funds.
        assert evm_node.w3.provider.make_request("evm_setAccountBalance", [refused, "0x0"])["result"] is True

    evm_node.w3.provider.make_request("miner_stop", [])
    sweeps_common.fault_hook = meanwhile
    try:
        run = sweeps_services.sweeps_run(chain_id="ETH", adapter=evm_adapter)
    finally:
        sweeps_common.fault_hook = None
        evm_node.w3.provider.make_request("miner_start", [])

    jobs = {j.from_address: j for j in SweepJob.objects.all()}
    assert seen == ["sweep.signed"]  # the four were signed and stored in one chunk, then sent together
    assert run.signed == 4 and run.broadcast == 2
    assert jobs[plain].status == SweepStatus.BROADCAST and jobs[known].status == SweepStatus.BROADCAST
    assert jobs[used].status == SweepStatus.FAILED
    assert jobs[used].reason == "the deposit address's nonce of this sweep was used by another transaction"
    assert jobs[refused].status == SweepStatus.SIGNED  # sent again, the same bytes, by the next run
    assert Alert.objects.filter(kind="SWEEP_BROADCAST_REJECTED", subject=f"sweep {jobs[refused].job_no}").exists()
    assert not Alert.objects.filter(kind="SWEEP_BROADCAST_REJECTED").exclude(subject=f"sweep {jobs[refused].job_no}")
    # Every sweep signed with its address's nonce 0, and the node holds the two it took.
    assert {j.nonce for j in jobs.values()} == {0}
    assert evm_adapter.tx_status(jobs[known].tx_hash).block_number is not None
    assert evm_adapter.tx_status(jobs[plain].tx_hash).found
    assert not evm_adapter.tx_status(jobs[refused].tx_hash).found


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_between_storing_a_chunk_and_sending_it_sends_each_sweep_once(
    eth_setup, evm_node, evm_adapter, settings
):
    hot, _ = eth_setup
    addresses = deposit_addresses("ETH", 30, prefix="chunk")
    eth = {i: ONE_ETH // 4 + i for i in range(30)}
    deposits_make(evm_node, evm_adapter, addresses, eth=eth, usdt={})

    killed = _worker("sweep.signed", evm_node)

    assert killed.returncode == -9, killed.stderr.decode()[-2000:]  # it died with the chunk stored, unsent
    assert SweepJob.objects.filter(status=SweepStatus.SIGNED).count() == 30
    assert all(evm_adapter.mined_count(a.address) == 0 for a in addresses)
    stored = dict(SweepJob.objects.values_list("from_address", "raw"))
    sweep_until_settled(evm_node, evm_adapter)  # the restarted worker
    jobs = list(SweepJob.objects.all())
    assert {j.status for j in jobs} == {SweepStatus.CONFIRMED} and len(jobs) == 30
    assert {j.from_address: j.raw for j in jobs} == stored  # the stored bytes were sent, never signed again
    for address in addresses:
        assert evm_adapter.mined_count(address.address) == 1  # sent once
    assert evm_adapter.balance(hot.address) == sum(int(j.amount * ONE_ETH) for j in jobs)
