"""The payout tables' migration: withdrawals signed before it keep being followed from payout_tx."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from eth_account import Account

BEFORE = [("withdrawals", "0007_verbose_names")]
AFTER = [("withdrawals", "0009_payout_columns_moved")]
PROCESSING, COMPLETED, FAILED, CANCELLED = 4, 5, 6, 7


def _migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture
def every_migration_applied_after():
    # Going back to BEFORE also undoes what depends on the payout tables (the Operators' payout
    # permissions): the next tests get the whole schema and its role grants back.
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def _signed(nonce: int) -> tuple[str, str]:
    tx = Account.create().sign_transaction(  # TEST-ONLY key
        {
            "nonce": nonce,
            "gasPrice": 3 * 10**9,
            "gas": 21_000,
            "to": Account.create().address,
            "value": 1,
            "chainId": 1337,
        }
    )
    return "0x" + bytes(tx.hash).hex(), "0x" + bytes(tx.raw_transaction).hex()


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_signed_withdrawals_get_their_payout_and_transaction_with_its_fee_terms(user, every_migration_applied_after):
    old = _migrate(BEFORE)
    record_model = old.get_model("withdrawals", "WithdrawRecord")
    common = {
        "user_id": user.id, "coin_id": "ETH", "coin_name": "Ether", "to_address": "0x" + "11" * 20,
        "amount": Decimal("1.5"), "fee": Decimal("0.003"), "actual_amount": Decimal("1.497"),
        "from_address": "0x" + "22" * 20,
    }  # fmt: skip
    tx_hash, raw = _signed(7)
    processing = record_model.objects.create(
        withdraw_no="W-processing", idempotency_key="a", status=PROCESSING, nonce=7, tx_hash=tx_hash,
        signed_tx=raw, broadcast_time="2026-01-02T03:04:05Z", **common,
    )  # fmt: skip
    done_hash, done_raw = _signed(6)
    completed = record_model.objects.create(
        withdraw_no="W-completed", idempotency_key="c", status=COMPLETED, nonce=6, tx_hash=done_hash,
        signed_tx=done_raw, broadcast_time="2026-01-02T03:00:00Z", block_number=90,
        complete_time="2026-01-02T03:10:00Z", **common,
    )  # fmt: skip
    failed_hash, failed_raw = _signed(5)
    failed = record_model.objects.create(
        withdraw_no="W-failed", idempotency_key="f", status=FAILED, nonce=5, tx_hash=failed_hash,
        signed_tx=failed_raw, broadcast_time="2026-01-02T02:00:00Z", block_number=80, **common,
    )  # fmt: skip
    unsent_hash, unsent_raw = _signed(8)
    unsent = record_model.objects.create(
        withdraw_no="W-unsent", idempotency_key="u", status=PROCESSING, nonce=8, tx_hash=unsent_hash,
        signed_tx=unsent_raw, **common,
    )  # fmt: skip
    trx = record_model.objects.create(
        withdraw_no="W-tron", idempotency_key="t", status=PROCESSING, tx_hash="ab" * 32,
        signed_tx='{"txID": "' + "ab" * 32 + '", "raw_data": {"fee_limit": 30000000}}', **{
            **common, "coin_id": "USDT-TRC20", "coin_name": "Tether USD", "from_address": "T" + "x" * 33,
        },
    )  # fmt: skip
    approved = record_model.objects.create(withdraw_no="W-approved", idempotency_key="b", status=2, **common)
    cancelled = record_model.objects.create(withdraw_no="W-cancelled", idempotency_key="x", status=CANCELLED, **common)

    new = _migrate(AFTER)

    payout_tx = new.get_model("withdrawals", "PayoutTx")
    links = new.get_model("withdrawals", "PayoutWithdrawal").objects
    link = links.get(withdraw_id=processing.id)
    (tx,) = payout_tx.objects.filter(payout_id=link.payout_id)
    payout = link.payout
    assert (payout.chain_id, payout.coin_id, payout.from_address, payout.nonce, payout.status) == (
        "ETH", "ETH", "0x" + "22" * 20, 7, "OPEN",
    )  # fmt: skip
    assert (tx.kind, tx.status, tx.tx_hash, tx.nonce) == ("ORIGINAL", "BROADCAST", processing.tx_hash, 7)
    assert (tx.raw, tx.gas_price, tx.gas_limit) == (processing.signed_tx, 3 * 10**9, 21_000)
    assert link.amount == Decimal("1.497")

    def one(record):
        link = links.get(withdraw_id=record.id)
        (tx,) = payout_tx.objects.filter(payout_id=link.payout_id)
        return link.payout, tx

    payout, tx = one(completed)
    assert (payout.status, payout.nonce, tx.status, tx.block_number, tx.raw) == ("COMPLETED", 6, "MINED", 90, done_raw)
    assert payout.settled_at is not None
    payout, tx = one(failed)
    assert (payout.status, payout.nonce, tx.status, tx.block_number) == ("FAILED", 5, "FAILED", 80)
    assert payout.settled_at is not None
    payout, tx = one(unsent)
    assert (payout.status, tx.status, tx.broadcast_at) == ("OPEN", "SIGNED", None)
    payout, tx = one(trx)
    assert (payout.chain_id, payout.coin_id, payout.nonce, tx.fee_limit, tx.nonce) == (
        "TRON", "USDT-TRC20", None, 30_000_000, None,
    )  # fmt: skip
    assert not links.filter(withdraw_id__in=[approved.id, cancelled.id]).exists()
