"""An admin Save racing the payout: the withdrawal is paid exactly once (MariaDB, ganache).

Every key here is a TEST-ONLY throwaway key of a local dev chain.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from assets import selectors as assets_selectors
from chains.testing import evm_adapter, evm_node  # noqa: F401
from wallet_project.testing import admin_form_data
from withdrawals import payout as withdrawals_payout
from withdrawals.models import WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, _hot_address, approved, nonce, signed_tx


@pytest.fixture(autouse=True)
def _no_fault():
    withdrawals_payout.fault_hook = None
    yield
    withdrawals_payout.fault_hook = None


def _waiting_for_a_row_lock() -> int:
    """Transactions of the server blocked on a row lock right now (MariaDB)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM information_schema.INNODB_TRX WHERE trx_state = 'LOCK WAIT'")
        return cursor.fetchone()[0]


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_an_admin_save_while_the_payout_holds_the_lock_cannot_pay_a_withdrawal_twice(
    monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    hot = _hot_address(monkeypatch, settings, tmp_path, evm_node)
    record, to = approved(get_user_model().objects.create_user("payee"), "1.5")
    auditor = Client()
    auditor.force_login(get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1"))
    url = f"/admin/withdrawals/withdrawrecord/{record.id}/change/"
    form = admin_form_data(auditor.get(url).content.decode())  # the page as the auditor has it open
    answers: list[int] = []

    def press_save() -> None:
        try:
            answers.append(auditor.post(url, {**form, "_save": "Save"}).status_code)
        finally:
            connection.close()

    saver = threading.Thread(target=press_save)

    def while_signing(step: str) -> None:
        if step != "sign.locked" or saver.ident is not None:
            return
        # The payout holds the withdrawal's row lock: Save is pressed now, and signing goes on
        # once that request is answered or is waiting for the lock.
        saver.start()
        deadline = time.monotonic() + 20
        while saver.is_alive() and not _waiting_for_a_row_lock() and time.monotonic() < deadline:
            time.sleep(0.05)

    withdrawals_payout.fault_hook = while_signing
    first = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    withdrawals_payout.fault_hook = None
    saver.join(timeout=30)
    again = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert answers == [403]
    assert (first.signed, again.signed) == (1, 0)
    assert evm_adapter.next_nonce(hot.address) == 1  # one transaction ever sent from the hot address
    assert record.tx_hash and signed_tx(record) and nonce(record) == 0
    assert record.status == WithdrawStatus.COMPLETED
    assert evm_adapter.balance(to) == int(Decimal("1.497") * ONE_ETH)  # 1.5 less the 0.003 fee, once
    assert assets_selectors.ledger_mismatches() == []
