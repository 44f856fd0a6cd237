"""The EVM payout run: the node read once per hot address, plain transfers neither estimated nor
simulated, sends in batches after the commits; another sender from the hot address mid-run, a
refused entry in a batch, a kill between the commits and the batch. Against ganache and MariaDB;
every key here is a TEST-ONLY throwaway key."""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from eth_account import Account

from addresses import signer
from assets import selectors as assets_selectors
from chains import services as chains_services
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from monitoring.models import Alert
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import Payout, PayoutTx, PayoutTxStatus, WithdrawRecord, WithdrawStatus
from withdrawals.tests.test_onchain import ONE_ETH, approved, hot  # noqa: F401
from withdrawals.tests.test_payout_faults import _worker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_fault():
    withdrawals_payout.fault_hook = None
    yield
    withdrawals_payout.fault_hook = None


@pytest.fixture
def calls(monkeypatch, evm_adapter):
    """The JSON-RPC methods the adapter asks its node for, counted (single calls and batch entries)."""
    seen: Counter[str] = Counter()
    node = evm_adapter.node
    call, batch_results = node.call, node.batch_results

    def counted_call(method, params=()):
        seen[method] += 1
        return call(method, params)

    def counted_batch(methods):
        seen.update(method for method, _ in methods)
        return batch_results(methods)

    monkeypatch.setattr(node, "call", counted_call)
    monkeypatch.setattr(node, "batch_results", counted_batch)
    return seen


def _approved(count: int, amount: str, tag: str) -> list[tuple[WithdrawRecord, str]]:
    """count approved ETH withdrawals, each of its own user (no velocity rule sends them to review)."""
    User = get_user_model()
    return [approved(User.objects.create_user(f"{tag}-{i}"), amount, key=f"{tag}-{i}") for i in range(count)]


def _settle(evm_node, evm_adapter) -> None:
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)


def _statuses(withdrawals: list[tuple[WithdrawRecord, str]]) -> list[int]:
    return [WithdrawRecord.objects.get(id=record.id).status for record, _ in withdrawals]


def _nonces(hot_address: str) -> list[int]:
    return sorted(Payout.objects.filter(from_address=hot_address).values_list("nonce", flat=True))


def test_one_run_pays_many_withdrawals_from_one_address_gap_free_in_batches_each_once(
    hot, evm_node, evm_adapter, calls, settings
):
    settings.WITHDRAW_EVM_SEND_BATCH = 4
    wallet = evm_node.deploy("GasHungryWallet")  # a recipient with code among plain ones
    plain = _approved(9, "0.25", "many")
    owner = get_user_model().objects.get(username="many-0")
    contract_wallet = withdrawals_services.withdrawal_apply(
        user_id=owner.id, coin_id="ETH", to_address=wallet, amount="0.5", idempotency_key="cw"
    )
    sent_before = evm_adapter.mined_count(hot.address)

    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    assert (paid.signed, paid.broadcast, paid.waiting) == (10, 10, 0)
    # The node read once for the address, the recipients' code once each in one batch; only the
    # contract wallet's transfer estimated and simulated; ten sends in three batches.
    assert calls["eth_getBalance"] == 1 and calls["eth_getCode"] == 10
    assert (calls["eth_estimateGas"], calls["eth_call"]) == (1, 1)
    assert calls["eth_sendRawTransaction"] == 10
    assert _nonces(hot.address) == list(range(sent_before, sent_before + 10))
    _settle(evm_node, evm_adapter)
    for record, to in plain:
        record.refresh_from_db()
        assert record.status == WithdrawStatus.COMPLETED
        assert evm_adapter.balance(to) == int(Decimal("0.247") * ONE_ETH)  # paid once: amount - fee
    contract_wallet.refresh_from_db()
    assert contract_wallet.status == WithdrawStatus.COMPLETED
    assert evm_node.contract(wallet, "GasHungryWallet").functions.depositCount().call() == 1
    gas = {int(evm_node.w3.eth.get_transaction_receipt(r.tx_hash)["gasUsed"]) for r, _ in plain}
    assert gas == {21_000}
    assert evm_adapter.mined_count(hot.address) == sent_before + 10
    assert NonceCursor.objects.get(address=hot.address).next_nonce == sent_before + 10
    assert assets_selectors.ledger_mismatches() == []


def _other_sender(hot, evm_adapter, to: str, amount: int, taken: list[int]):
    """A fault hook: once the second payout is at the node, another sender of the hot address takes
    the next nonce from the cursor and sends `amount` to `to` (once); its nonce goes into `taken`."""

    def send(step: str) -> None:
        # At the second send: the first is recorded as sent (the step comes before the record).
        sent = PayoutTx.objects.filter(payout__from_address=hot.address, status=PayoutTxStatus.BROADCAST)
        if step != "broadcast.sent" or taken or not sent.exists():
            return
        with transaction.atomic():
            nonce = chains_services.nonce_allocate(
                chain_id="ETH", address=hot.address, node_next=evm_adapter.next_nonce(hot.address)
            )
            unsigned = evm_adapter.build_transfer(
                from_address=hot.address,
                to_address=to,
                amount_base_units=amount,
                nonce=nonce,
                gas_limit=21_000,
                gas_price=evm_adapter.fee_estimate() * 2,
            )
            signed = signer.signer_for("ETH")(unsigned)
        evm_adapter.broadcast_irreversible(signed)
        taken.append(nonce)

    return send


def test_another_sender_taking_a_nonce_mid_run_makes_the_run_read_again_never_reusing_it_or_overspending(
    hot, evm_node, evm_adapter, settings
):
    settings.WITHDRAW_EVM_SEND_BATCH = 1  # each sent at once: the node's balance shows what is spent
    # Groups of two: the other sender comes between two groups, and the next group finds out.
    settings.WITHDRAW_EVM_SIGN_GROUP = 2
    withdrawals = _approved(5, "1.5", "raced")
    start = evm_adapter.mined_count(hot.address)
    held = evm_adapter.balance(hot.address)
    outside = Account.create().address  # TEST-ONLY
    taken: list[int] = []

    # Once the second payout is at the node: another sender of the address (as a treasury transfer
    # to cold does) takes the next nonce from the cursor and spends most of what is left.
    treasury_transfer = _other_sender(hot, evm_adapter, outside, held - 5 * ONE_ETH, taken)

    withdrawals_payout.fault_hook = treasury_transfer
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    withdrawals_payout.fault_hook = None

    # 3 ETH paid, then 5 ETH left less the outside transfer's gas: one more of 1.5 fits, and the
    # rest wait for a top-up instead of being refused by the node or reusing the taken nonce.
    assert taken == [start + 2]
    assert (paid.signed, paid.broadcast, paid.waiting) == (3, 3, 2)
    assert _nonces(hot.address) == [start, start + 1, start + 3]
    assert Alert.objects.filter(kind="WITHDRAW_HOT_WALLET_SHORT").count() == 2
    assert not Alert.objects.filter(kind="WITHDRAW_BROADCAST_REJECTED").exists()
    _settle(evm_node, evm_adapter)
    assert _statuses(withdrawals) == [WithdrawStatus.COMPLETED] * 3 + [WithdrawStatus.APPROVED] * 2
    assert evm_adapter.mined_count(hot.address) == start + 4  # three payouts and the outside transfer
    assert evm_adapter.balance(outside) == held - 5 * ONE_ETH
    assert evm_adapter.balance(hot.address) >= 0


def test_a_batch_with_one_refused_entry_sends_the_others_and_alerts_the_refused_one(hot, evm_node, evm_adapter):
    withdrawals = _approved(3, "0.5", "refused")
    start = evm_adapter.mined_count(hot.address)
    evm_node.w3.provider.make_request("miner_stop", [])
    try:
        # The hot key used outside the wallet: a transaction of the nonce the second payout will
        # take, at a far higher fee, waits in the node's pool. The node refuses ours of that nonce.
        fee = evm_adapter.fee_estimate() * 10
        outside = evm_adapter.build_transfer(
            from_address=hot.address,
            to_address=Account.create().address,  # TEST-ONLY
            amount_base_units=1,
            nonce=start + 1,
            gas_limit=21_000,
            max_fee_per_gas=fee,
            max_priority_fee_per_gas=fee,
        )
        evm_adapter.broadcast_irreversible(signer.signer_for("ETH")(outside))

        paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

        txs = [PayoutTx.objects.get(payout__links__withdraw=record) for record, _ in withdrawals]
        assert [tx.nonce for tx in txs] == [start, start + 1, start + 2]
        assert (paid.signed, paid.broadcast) == (3, 2)
        assert [tx.status for tx in txs] == [PayoutTxStatus.BROADCAST, PayoutTxStatus.SIGNED, PayoutTxStatus.BROADCAST]
        assert [evm_adapter.tx_status(tx.tx_hash).found for tx in txs] == [True, False, True]
        (alert,) = Alert.objects.filter(kind="WITHDRAW_BROADCAST_REJECTED")
        assert withdrawals[1][0].withdraw_no in alert.subject
    finally:
        evm_node.w3.provider.make_request("miner_start", [])


@pytest.mark.mysql
def test_a_worker_killed_between_commits_and_their_batch_then_restarted_sends_each_once(
    hot, evm_node, evm_adapter, monkeypatch
):
    withdrawals = _approved(4, "0.5", "killed")
    start = evm_adapter.mined_count(hot.address)
    monkeypatch.setenv("PAYOUT_KILL_NTH", "3")  # at the third commit: three stored, none sent yet
    monkeypatch.setenv("WITHDRAW_EVM_SIGN_GROUP", "1")  # a commit each (groups: test_payout_evm_group)

    killed = _worker("pay.signed", evm_node)

    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert evm_adapter.mined_count(hot.address) == start  # nothing reached the node
    assert PayoutTx.objects.filter(status=PayoutTxStatus.SIGNED).count() == 3
    for _ in range(3):  # the restarted worker
        withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
        _settle(evm_node, evm_adapter)
    for record, to in withdrawals:
        record.refresh_from_db()
        assert record.status == WithdrawStatus.COMPLETED
        assert evm_adapter.balance(to) == int(Decimal("0.497") * ONE_ETH)  # paid once
    assert _nonces(hot.address) == list(range(start, start + 4))
    assert evm_adapter.mined_count(hot.address) == start + 4
    assert PayoutTx.objects.count() == 4
    assert WithdrawRecord.objects.filter(status=WithdrawStatus.COMPLETED).count() == 4
    assert assets_selectors.ledger_mismatches() == []


def test_another_senders_transfer_not_in_a_block_yet_makes_the_run_wait_instead_of_overspending(
    hot, evm_node, evm_adapter, settings
):
    settings.WITHDRAW_EVM_SEND_BATCH = 1
    settings.WITHDRAW_EVM_SIGN_GROUP = 2  # the other sender comes between two groups
    withdrawals = _approved(5, "1.5", "pending-other")
    start = evm_adapter.mined_count(hot.address)
    held = evm_adapter.balance(hot.address)
    outside = Account.create().address  # TEST-ONLY
    taken: list[int] = []

    # Between two blocks, after the second payout is sent: another sender of the address (a treasury
    # transfer to cold) takes the next nonce from the cursor and sends 5 ETH. The node's balance at
    # its latest block does not show it yet.
    treasury_transfer = _other_sender(hot, evm_adapter, outside, 5 * ONE_ETH, taken)

    evm_node.w3.provider.make_request("miner_stop", [])
    try:
        withdrawals_payout.fault_hook = treasury_transfer
        paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
        withdrawals_payout.fault_hook = None
        # What the other transfer spends is unknown until it is in a block: nothing more is signed.
        assert taken == [start + 2]
        assert (paid.signed, paid.broadcast, paid.waiting) == (2, 2, 3)
        assert _nonces(hot.address) == [start, start + 1]
    finally:
        withdrawals_payout.fault_hook = None
        evm_node.w3.provider.make_request("miner_start", [])
    _settle(evm_node, evm_adapter)
    assert evm_adapter.balance(outside) == 5 * ONE_ETH
    # Once it is mined, what is left (10 - 5 - 2 x 1.5 - gas, under 2 ETH) pays one more; two wait short.
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    assert (paid.signed, paid.broadcast, paid.waiting) == (1, 1, 2)
    assert _nonces(hot.address) == [start, start + 1, start + 3]
    _settle(evm_node, evm_adapter)
    assert _statuses(withdrawals) == [WithdrawStatus.COMPLETED] * 3 + [WithdrawStatus.APPROVED] * 2
    assert evm_adapter.mined_count(hot.address) == start + 4
    assert not Alert.objects.filter(kind="WITHDRAW_BROADCAST_REJECTED").exists()
    assert held - evm_adapter.balance(hot.address) < 10 * ONE_ETH
