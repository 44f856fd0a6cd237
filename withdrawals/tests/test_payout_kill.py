"""
The payout worker killed with SIGKILL at each step of paying a withdrawal, then run again: one payment.

A real kill, not an exception: the worker is a separate process that dies without unwinding, so
its open transaction is rolled back by the server when the connection drops, and whatever it
sent to the node stays sent. Against the EVM dev node; every key is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import os
import signal
import subprocess
import sys
from decimal import Decimal

import pytest
from django.db import connection

from assets import selectors as assets_selectors
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from withdrawals import payout as withdrawals_payout
from withdrawals.models import WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, _hot_address, approved

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

# Run in the worker: pay the chain's withdrawals and die by SIGKILL at the named point.
WORKER = """
import os, signal, sys
import django
django.setup()
from django.db import connections
connections["default"].settings_dict["NAME"] = os.environ["WALLET_TEST_DB_NAME"]
from chains.evm import EvmAdapter
from withdrawals import payout

point = sys.argv[1]
adapter = EvmAdapter(url=os.environ["WALLET_TEST_EVM_URL"], connect_timeout=1, read_timeout=10)

def die(step):
    if step == point:
        os.kill(os.getpid(), signal.SIGKILL)

payout.fault_hook = die
if point == "broadcast.sent":  # the node has the transaction; the worker dies before recording it
    send = adapter.broadcast_irreversible
    def send_then_die(signed):
        send(signed)
        die("broadcast.sent")
    adapter.broadcast_irreversible = send_then_die
payout.withdrawals_pay(chain_id="ETH", adapter=adapter)
"""


@pytest.mark.parametrize("point", ["sign.locked", "pay.signed", "broadcast.sent"])
def test_a_payout_worker_killed_at_any_step_pays_the_withdrawal_once_when_run_again(
    point, user, monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    hot = _hot_address(monkeypatch, settings, tmp_path, evm_node)
    record, to = approved(user, "2")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wallet_project.settings",
        "WALLET_TEST_DB_NAME": connection.settings_dict["NAME"],
        "WALLET_TEST_EVM_URL": evm_node.url,
    }

    worker = subprocess.run([sys.executable, "-c", WORKER, point], env=env, timeout=120, check=False)  # noqa: S603
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)  # the next run, after the crash
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert worker.returncode == -signal.SIGKILL
    assert record.status == WithdrawStatus.COMPLETED
    assert evm_adapter.balance(to) == int(Decimal("1.997") * ONE_ETH)  # paid once
    assert evm_adapter.mined_count(hot.address) == 1
    assert NonceCursor.objects.get(address=hot.address).next_nonce == 1
    assert assets_selectors.ledger_mismatches() == []
