"""
A treasury transfer to cold killed with SIGKILL at each step and resumed, or run twice at once:
one transaction on chain, one confirmation, one fee booking, no nonce skipped. Against ganache and
MariaDB; the worker is a real child process. Every key here is a TEST-ONLY throwaway key.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest

from addresses import services as addresses_services
from assets.models import BusinessType, HouseFlow
from chains.models import NonceCursor
from treasury import sending
from treasury import services as treasury_services
from treasury.models import TransferStatus, TreasuryTransfer
from treasury.tests.helpers import limits_set, operator
from treasury.tests.test_cold_evm import ONE_ETH, _hot_address, refresh, run
from wallet_project.testing import race, worker_run

STEPS = ["treasury.sign.locked", "treasury.signed", "treasury.sent", "treasury.confirmed"]


def _worker(step: str, evm_node) -> subprocess.CompletedProcess[bytes]:
    return worker_run("treasury.tests.transfer_worker", step, env={"ETH_RPC_URL": evm_node.url}, timeout=120)


def _approved_transfer(monkeypatch, settings, tmp_path, evm_node, evm_adapter):
    settings.HOT_BALANCE_CHAINS = ["ETH"]
    settings.TREASURY_AUTO_SEND_COINS = ["ETH"]
    hot = _hot_address(monkeypatch, settings, tmp_path, evm_node)  # 10 ETH
    cold = addresses_services.cold_address_add(chain_id="ETH", address=evm_node.accounts[7].address)
    limits_set(address=hot, coin_id="ETH", low=None, high="4", proposer=operator("alice"), approver=operator("bob"))
    refresh(evm_adapter)
    treasury_services.treasury_plan(chain_id="ETH")
    transfer = TreasuryTransfer.objects.get()
    assert transfer.status == TransferStatus.APPROVED
    return hot, cold, transfer


def _sent_once(*, hot, cold, transfer, cold_before, mined_before, evm_adapter) -> None:
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.CONFIRMED
    assert evm_adapter.balance(cold.address) == cold_before + 6 * ONE_ETH  # moved once
    assert evm_adapter.mined_count(hot.address) == mined_before + 1  # one transaction on chain
    assert NonceCursor.objects.get(address=hot.address).next_nonce == mined_before + 1  # no nonce skipped
    (fee,) = HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE)
    assert fee.amount == -transfer.fee and fee.amount < 0


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("step", STEPS)
def test_a_transfer_worker_killed_at_any_step_then_resumed_sends_once(
    step, monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    hot, cold, transfer = _approved_transfer(monkeypatch, settings, tmp_path, evm_node, evm_adapter)
    cold_before, mined_before = evm_adapter.balance(cold.address), evm_adapter.mined_count(hot.address)

    killed = _worker(step, evm_node)

    assert killed.returncode == -9, killed.stderr.decode()[-2000:]  # it really died at that step
    sending.fault_hook = None
    run(evm_adapter, evm_node, rounds=4)  # the restarted worker
    _sent_once(
        hot=hot,
        cold=cold,
        transfer=transfer,
        cold_before=cold_before,
        mined_before=mined_before,
        evm_adapter=evm_adapter,
    )


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_one_transaction(monkeypatch, settings, tmp_path, evm_node, evm_adapter):
    hot, cold, transfer = _approved_transfer(monkeypatch, settings, tmp_path, evm_node, evm_adapter)
    cold_before, mined_before = evm_adapter.balance(cold.address), evm_adapter.mined_count(hot.address)
    errors = race(lambda: sending.treasury_send(chain_id="ETH", adapter=evm_adapter))

    assert errors == []
    run(evm_adapter, evm_node, rounds=3)
    run(evm_adapter, evm_node, rounds=1)  # and once more: nothing new
    _sent_once(
        hot=hot,
        cold=cold,
        transfer=transfer,
        cold_before=cold_before,
        mined_before=mined_before,
        evm_adapter=evm_adapter,
    )
    assert list(transfer.logs.order_by("id").values_list("action", flat=True)) == [
        "plan_auto",
        "sign",
        "broadcast",
        "confirm",
    ]
    assert Decimal(6) == transfer.amount
