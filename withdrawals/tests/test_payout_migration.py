"""The payout tables' migration: withdrawals signed before it keep being followed from payout_tx."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from eth_account import Account

BEFORE = [("withdrawals", "0004_onchain_payment")]
AFTER = [("withdrawals", "0006_payout_columns_moved")]


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_signed_withdrawals_get_their_payout_and_transaction_with_its_fee_terms(user):
    old = _migrate(BEFORE)
    record_model = old.get_model("withdrawals", "WithdrawRecord")
    signed = Account.create().sign_transaction(  # TEST-ONLY key
        {"nonce": 7, "gasPrice": 3 * 10**9, "gas": 21_000, "to": Account.create().address, "value": 1, "chainId": 1337}
    )
    common = {
        "user_id": user.id, "coin_id": "ETH", "coin_name": "Ether", "to_address": "0x" + "11" * 20,
        "amount": Decimal("1.5"), "fee": Decimal("0.003"), "actual_amount": Decimal("1.497"),
        "from_address": "0x" + "22" * 20,
    }  # fmt: skip
    processing = record_model.objects.create(
        withdraw_no="W-processing", idempotency_key="a", status=4, nonce=7, tx_hash="0x" + bytes(signed.hash).hex(),
        signed_tx="0x" + bytes(signed.raw_transaction).hex(), broadcast_time="2026-01-02T03:04:05Z", **common,
    )  # fmt: skip
    approved = record_model.objects.create(withdraw_no="W-approved", idempotency_key="b", status=2, **common)

    new = _migrate(AFTER)

    payout_tx = new.get_model("withdrawals", "PayoutTx")
    link = new.get_model("withdrawals", "PayoutWithdrawal").objects.get(withdraw_id=processing.id)
    (tx,) = payout_tx.objects.filter(payout_id=link.payout_id)
    payout = link.payout
    assert (payout.chain_id, payout.coin_id, payout.from_address, payout.nonce, payout.status) == (
        "ETH", "ETH", "0x" + "22" * 20, 7, "OPEN",
    )  # fmt: skip
    assert (tx.kind, tx.status, tx.tx_hash, tx.nonce) == ("ORIGINAL", "BROADCAST", processing.tx_hash, 7)
    assert (tx.raw, tx.gas_price, tx.gas_limit) == (processing.signed_tx, 3 * 10**9, 21_000)
    assert link.amount == Decimal("1.497")
    assert not new.get_model("withdrawals", "PayoutWithdrawal").objects.filter(withdraw_id=approved.id).exists()
