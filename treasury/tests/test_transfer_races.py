"""
Treasury transfers under concurrency and misuse, on MariaDB and ganache: two planners open one
transfer, two operators approving at once approve it once, a stored transaction whose nonce
something else took fails loudly instead of waiting forever. Every key here is TEST-ONLY.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from addresses import services as addresses_services
from addresses import signer
from monitoring.models import Alert
from treasury import sending
from treasury import services as treasury_services
from treasury.models import TransferStatus, TreasuryTransfer
from treasury.tests.helpers import limits_set, operator
from treasury.tests.test_cold_evm import ONE_ETH, _hot_address, refresh

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]


def _together(*calls) -> list[object]:
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(index: int, call) -> None:
        try:
            barrier.wait()
            results[index] = call()
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.fixture
def surplus(monkeypatch, settings, tmp_path, evm_node, evm_adapter):
    settings.HOT_BALANCE_CHAINS = ["ETH"]
    settings.TREASURY_AUTO_SEND_COINS = []
    hot = _hot_address(monkeypatch, settings, tmp_path, evm_node)  # 10 ETH
    cold = addresses_services.cold_address_add(chain_id="ETH", address=evm_node.accounts[8].address)
    alice, bob = operator("alice"), operator("bob")
    limits_set(address=hot, coin_id="ETH", low=None, high="4", proposer=alice, approver=bob)
    refresh(evm_adapter)
    return hot, cold, alice, bob


def test_two_planners_at_once_open_one_transfer(surplus):
    results = _together(*[lambda: treasury_services.treasury_plan(chain_id="ETH")] * 2)

    assert [r for r in results if isinstance(r, Exception)] == []
    assert TreasuryTransfer.objects.count() == 1
    assert sum(r.proposed for r in results) == 1
    assert Alert.objects.filter(kind="TREASURY_TRANSFER_PROPOSED").count() == 1


def test_two_operators_approving_at_once_approve_once(surplus):
    _hot, _cold, alice, bob = surplus
    treasury_services.treasury_plan(chain_id="ETH")
    transfer = TreasuryTransfer.objects.get()

    results = _together(
        lambda: treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=alice, remark="a"),
        lambda: treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=bob, remark="b"),
    )

    refused = [r for r in results if isinstance(r, treasury_services.TransferConflict)]
    assert len(refused) == 1
    assert transfer.logs.filter(action="approve").count() == 1
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.APPROVED


def test_an_operator_without_the_permission_cannot_approve(surplus, django_user_model):
    treasury_services.treasury_plan(chain_id="ETH")
    transfer = TreasuryTransfer.objects.get()
    clerk = django_user_model.objects.create_user("clerk", is_staff=True)

    with pytest.raises(Exception, match="approve_treasurytransfer"):
        treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=clerk, remark="x")

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.PROPOSED


def test_a_stored_transfer_whose_nonce_another_transaction_took_fails_loudly(surplus, evm_node, evm_adapter):
    hot, cold, _alice, bob = surplus
    treasury_services.treasury_plan(chain_id="ETH")
    transfer = TreasuryTransfer.objects.get()
    treasury_services.treasury_transfer_approve(transfer_id=transfer.id, user=bob, remark="ok")

    def stop(name: str) -> None:
        if name == "treasury.signed":
            raise RuntimeError("stopped after signing")

    sending.fault_hook = stop
    with pytest.raises(RuntimeError):
        sending.treasury_send(chain_id="ETH", adapter=evm_adapter)
    sending.fault_hook = None
    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.SIGNED
    # Something else signs with the hot key and takes the nonce.
    other = evm_adapter.build_transfer(
        from_address=hot.address,
        to_address=evm_node.accounts[9].address,
        amount_base_units=ONE_ETH,
        nonce=transfer.nonce,
    )
    evm_adapter.broadcast_irreversible(signer.signer_for("ETH")(other))
    evm_node.mine(2)
    cold_before = evm_adapter.balance(cold.address)

    sending.treasury_confirm(chain_id="ETH", adapter=evm_adapter)
    sending.treasury_send(chain_id="ETH", adapter=evm_adapter)

    transfer.refresh_from_db()
    assert transfer.status == TransferStatus.FAILED and "was used by a transaction" in transfer.reason
    assert Alert.objects.filter(kind="TREASURY_TRANSFER_FAILED", resolved_at__isnull=True).count() == 1
    assert evm_adapter.balance(cold.address) == cold_before
