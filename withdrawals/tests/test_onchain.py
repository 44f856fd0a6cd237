"""Withdrawals paid on chain: signed and stored before broadcast, settled at their confirmations.

Against a real EVM dev node (ganache); every key here is a TEST-ONLY throwaway key.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from coins.testing import check_constraints_off
from monitoring.models import Alert
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import Payout, PayoutTx, WithdrawRecord, WithdrawStatus
from withdrawals.tests.test_withdrawals import make_auditor

ONE_ETH = 10**18


@pytest.fixture(autouse=True)
def _no_fault():
    withdrawals_payout.fault_hook = None
    yield
    withdrawals_payout.fault_hook = None


@pytest.fixture
def hot(db, monkeypatch, settings, tmp_path, evm_node):
    return _hot_address(monkeypatch, settings, tmp_path, evm_node)


def _hot_address(monkeypatch, settings, tmp_path, evm_node):
    """A funded hot address of the withdraw pool: 10 ETH and 1,000 test USDT."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=evm_node.contracts["USDT"])
    signer.hd_wallet_create(
        chain_id="ETH", purpose=AddressType.HOT, mnemonic=signer.mnemonic_generate(), label="test-only"
    )
    (row,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=1)
    evm_node.send_tx({"to": row.address, "value": 10 * ONE_ETH})
    usdt = evm_node.contract(evm_node.contracts["USDT"])
    evm_node.transact(usdt.functions.transfer(row.address, 1000 * 10**6))
    return row


def nonce(record: WithdrawRecord) -> int | None:
    """The nonce of the withdrawal's payout (None: not signed, or a chain without nonces)."""
    payout = Payout.objects.filter(links__withdraw=record).first()
    return payout.nonce if payout is not None else None


def signed_tx(record: WithdrawRecord) -> str | None:
    """The stored raw transaction the withdrawal shows (its tx_hash), None if nothing is signed."""
    tx = PayoutTx.objects.filter(tx_hash=record.tx_hash).first() if record.tx_hash else None
    return tx.raw if tx is not None else None


def approved(
    user, amount: str, *, coin_id: str = "ETH", key: str = "k1", fund: str = "100"
) -> tuple[WithdrawRecord, str]:
    """An approved withdrawal to a fresh outside address (below the audit threshold)."""
    coin = CoinConfig.objects.get(coin_id=coin_id)
    assets_services.balance_credit(
        user_id=user.id, coin=coin, amount=Decimal(fund), business_type=BusinessType.RECHARGE, biz_ref=f"fund-{key}"
    )
    to = Account.create().address  # TEST-ONLY
    record = withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id=coin_id, to_address=to, amount=amount, idempotency_key=key
    )
    assert record.status == WithdrawStatus.APPROVED
    return record, to


def test_pays_an_eth_withdrawal_once_and_settles_it_at_its_confirmations(hot, user, evm_node, evm_adapter):
    record, to = approved(user, "1.5")

    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    again = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)  # nothing left to sign
    early = withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(1)
    done = withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (paid.signed, paid.broadcast, again.signed) == (1, 1, 0)
    assert (early.waiting, done.completed) == (1, 1)  # mined in one block, completed at two
    assert record.status == WithdrawStatus.COMPLETED
    assert (record.from_address, nonce(record)) == (hot.address, 0)
    assert evm_adapter.balance(to) == int(Decimal("1.497") * ONE_ETH)  # amount - fee of 0.003
    balance = Balance.objects.get(user=user, coin_id="ETH")
    assert (balance.available, balance.frozen) == (Decimal("98.5"), Decimal(0))
    assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_SETTLE).count() == 1
    assert list(record.audit_logs.order_by("id").values_list("action", flat=True)) == [
        "apply",
        "auto_approve",
        "sign",
        "confirm",
    ]
    assert assets_selectors.ledger_mismatches() == []


def test_a_crash_between_signing_and_broadcast_sends_the_stored_transaction_not_a_second(
    hot,
    user,
    evm_node,
    evm_adapter,
):
    record, to = approved(user, "2")

    def crash(step: str) -> None:
        if step == "pay.signed":
            raise RuntimeError("killed after the signed transaction was stored")

    withdrawals_payout.fault_hook = crash
    with pytest.raises(RuntimeError):
        withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    withdrawals_payout.fault_hook = None
    record.refresh_from_db()
    stored = (record.tx_hash, signed_tx(record))
    assert record.status == WithdrawStatus.PROCESSING and evm_adapter.tx_status(record.tx_hash).found is False

    rerun = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (rerun.signed, rerun.broadcast) == (0, 1)  # the stored transaction, sent; nothing signed again
    assert (record.tx_hash, signed_tx(record)) == stored
    assert record.status == WithdrawStatus.COMPLETED
    assert evm_adapter.balance(to) == int(Decimal("1.997") * ONE_ETH)
    assert NonceCursor.objects.get(address=hot.address).next_nonce == 1


def test_consecutive_withdrawals_get_consecutive_nonces_and_a_token_payout_works(
    hot,
    user,
    evm_node,
    evm_adapter,
):
    eth_record, _ = approved(user, "1", key="a")
    usdt_record, to = approved(user, "25", coin_id="USDT-ERC20", key="b")

    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    eth_record.refresh_from_db()
    usdt_record.refresh_from_db()
    assert (nonce(eth_record), nonce(usdt_record)) == (0, 1)
    assert (eth_record.status, usdt_record.status) == (WithdrawStatus.COMPLETED,) * 2
    assert evm_adapter.balance(to, contract=evm_node.contracts["USDT"]) == 20 * 10**6  # 25 - fee of 5


def test_a_reverted_token_payout_fails_and_unfreezes(hot, user, evm_node, evm_adapter):
    # A token that blocks transfers (paused, or the recipient blacklisted, as USDT can do) only after
    # the payout was simulated and signed: a revert no simulation could foresee.
    token = evm_node.token_deploy(contract="BlockableToken")
    contract = evm_node.contract(token, "BlockableToken")
    evm_node.transact(contract.functions.mint(hot.address, 10**12))
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=token)
    record, _ = approved(user, "25", coin_id="USDT-ERC20")

    def block_after_signing(step: str) -> None:
        if step == "pay.signed":
            evm_node.transact(contract.functions.setTransfersBlocked(True))

    withdrawals_payout.fault_hook = block_after_signing
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    withdrawals_payout.fault_hook = None
    evm_node.mine(2)
    result = withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (paid.signed, paid.broadcast) == (1, 1)
    assert (result.failed, record.status) == (1, WithdrawStatus.FAILED)
    balance = Balance.objects.get(user=user, coin_id="USDT-ERC20")
    assert (balance.available, balance.frozen) == (Decimal(100), Decimal(0))
    assert Alert.objects.get(kind="WITHDRAW_FAILED").subject == f"withdrawal {record.withdraw_no}"
    assert assets_selectors.ledger_mismatches() == []


def test_a_token_payout_the_node_says_reverts_is_not_signed_and_waits_for_an_auditor(hot, user, evm_node, evm_adapter):
    token = evm_node.token_deploy(contract="BlockableToken")
    contract = evm_node.contract(token, "BlockableToken")
    evm_node.transact(contract.functions.mint(hot.address, 10**12))
    evm_node.transact(contract.functions.setTransfersBlocked(True))  # before signing: the simulation sees it
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=token)
    record, _ = approved(user, "25", coin_id="USDT-ERC20")
    auditor = make_auditor("ops-rex")

    result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    record.refresh_from_db()
    assert (result.signed, result.waiting, record.status, signed_tx(record)) == (0, 1, WithdrawStatus.APPROVED, None)
    assert evm_adapter.next_nonce(hot.address) == 0 and not NonceCursor.objects.filter(next_nonce__gt=0).exists()
    alert = Alert.objects.get(kind="WITHDRAW_WOULD_REVERT")
    assert alert.subject == f"withdrawal {record.withdraw_no}"
    assert "an auditor should reject it" in alert.message

    withdrawals_services.withdrawal_reject(withdraw_id=record.id, auditor_id=auditor.id, remark="token blocks them")

    record.refresh_from_db()
    balance = Balance.objects.get(user=user, coin_id="USDT-ERC20")
    assert (record.status, balance.available, balance.frozen) == (WithdrawStatus.REJECTED, Decimal(100), Decimal(0))
    assert assets_selectors.ledger_mismatches() == []


def test_a_payout_the_hot_address_cannot_cover_is_not_signed_until_it_can(hot, user, evm_node, evm_adapter):
    record, to = approved(user, "1500", coin_id="USDT-ERC20", fund="1500")  # the hot address holds 1,000

    short = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    record.refresh_from_db()
    assert (short.signed, short.waiting, record.status, signed_tx(record)) == (0, 1, WithdrawStatus.APPROVED, None)
    assert "holds 1000 USDT-ERC20 free" in Alert.objects.get(kind="WITHDRAW_HOT_WALLET_SHORT").message
    assert not NonceCursor.objects.filter(address=hot.address, next_nonce__gt=0).exists()  # no nonce taken

    usdt = evm_node.contract(evm_node.contracts["USDT"])
    evm_node.transact(usdt.functions.transfer(hot.address, 1000 * 10**6))  # ops top the hot wallet up
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (paid.signed, record.status, nonce(record)) == (1, WithdrawStatus.COMPLETED, 0)
    assert evm_adapter.balance(to, contract=evm_node.contracts["USDT"]) == 1495 * 10**6


def test_without_a_hot_wallet_nothing_is_signed_and_ops_are_told_how_to_create_one(db, user, evm_adapter):
    record, _ = approved(user, "1")

    result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert result.signed == 0 and "NoHotWallet" in result.error
    assert record.status == WithdrawStatus.APPROVED and signed_tx(record) is None
    alert = Alert.objects.get(kind="WITHDRAW_SIGN_FAILED")
    assert alert.subject == "chain ETH"
    assert "No hot address exists for chain ETH and pool 'withdraw'" in alert.message
    assert "manage.py create_hot_address --chain ETH --wallet-type withdraw" in alert.message
    assert "can pay" not in alert.message


def test_a_mined_payout_short_of_its_confirmations_is_not_counted_again_against_the_hot_address(
    hot, user, evm_node, evm_adapter
):
    CoinConfig.objects.filter(coin_id="ETH").update(required_confirmations=3)
    first, _ = approved(user, "6", key="a")  # the hot address holds 10 ETH
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)  # mined at once: 1 confirmation of 3
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)  # sees it mined
    second, to = approved(user, "3", key="b")  # the node shows about 4 ETH left: enough

    result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    first.refresh_from_db()
    second.refresh_from_db()
    assert (result.signed, result.error, second.status) == (1, None, WithdrawStatus.PROCESSING)
    assert first.status == WithdrawStatus.PROCESSING and first.block_number is not None
    evm_node.mine(3)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    second.refresh_from_db()
    assert second.status == WithdrawStatus.COMPLETED
    assert evm_adapter.balance(to) == int(Decimal("2.997") * ONE_ETH)


def test_a_payout_a_reorg_unmined_counts_against_the_hot_address_again(hot, user, evm_node, evm_adapter):
    first, _ = approved(user, "6", key="a")  # the hot address holds 10 ETH
    before = evm_node.snapshot()
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)  # mined at once
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)  # seen mined
    first.refresh_from_db()
    assert first.block_number is not None

    evm_node.revert(before)  # its block is orphaned, and the transaction with it
    evm_node.w3.provider.make_request("miner_stop", [])
    try:
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)  # sent again, unmined
        second, _ = approved(user, "5", key="b")  # 10 ETH on chain, 6 of them promised to the first
        result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    finally:
        evm_node.w3.provider.make_request("miner_start", [])

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, first.block_number) == (WithdrawStatus.PROCESSING, None)
    assert (result.signed, second.status, signed_tx(second)) == (0, WithdrawStatus.APPROVED, None)
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    first.refresh_from_db()
    assert first.status == WithdrawStatus.COMPLETED


def test_a_token_without_its_contract_is_never_paid_as_ether(hot, user, evm_adapter):
    record, to = approved(user, "25", coin_id="USDT-ERC20")
    with check_constraints_off():  # the database refuses such a row now; one from before the rule
        CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=None)

    result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)

    record.refresh_from_db()
    assert (result.signed, result.waiting, record.status) == (0, 1, WithdrawStatus.APPROVED)
    assert "no contract address" in result.waits[0]
    assert evm_adapter.balance(to) == 0


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
def test_two_payers_at_once_sign_each_withdrawal_once_with_distinct_nonces(
    monkeypatch, settings, tmp_path, evm_node, evm_adapter
):
    import threading

    from django.contrib.auth import get_user_model
    from django.db import connection

    hot_row = _hot_address(monkeypatch, settings, tmp_path, evm_node)
    owner = get_user_model().objects.create_user("payer-race")
    paid = [approved(owner, "1", key=f"r{n}") for n in range(4)]
    start = threading.Barrier(2)
    results = []

    def pay() -> None:
        start.wait(timeout=10)
        try:
            results.append(withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter))
        finally:
            connection.close()

    threads = [threading.Thread(target=pay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    # One payer skips a withdrawal while the other's signed transaction is on its way to the node
    # (it holds the nonce before): the next run signs what both skipped.
    results.append(withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter))
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    records = list(WithdrawRecord.objects.order_by("id"))
    assert sum(r.signed for r in results) == 4  # every withdrawal signed once between the payers
    assert sorted(nonce(r) for r in records) == [0, 1, 2, 3]
    assert {r.status for r in records} == {WithdrawStatus.COMPLETED}
    for _record, to in paid:
        assert evm_adapter.balance(to) == int(Decimal("0.997") * ONE_ETH)
    assert NonceCursor.objects.get(address=hot_row.address).next_nonce == 4
    assert assets_selectors.ledger_mismatches() == []


def test_a_payout_a_reorg_unmined_counts_against_the_hot_address_even_before_the_next_confirm_run(
    hot, user, evm_node, evm_adapter
):
    first, _ = approved(user, "6", key="a")  # the hot address holds 10 ETH
    before = evm_node.snapshot()
    withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)  # mined at once
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)  # seen mined
    first.refresh_from_db()
    evm_node.revert(before)  # its block is orphaned, and the transaction with it
    evm_node.w3.provider.make_request("miner_stop", [])
    try:
        # A real node puts an orphaned block's transactions back in its pool: here, by hand.
        evm_node.w3.provider.make_request("eth_sendRawTransaction", [signed_tx(first)])
        second, _ = approved(user, "5", key="b")  # 10 ETH on chain, 6 of them promised to the first again

        # The payout run comes before the confirmation run that would notice the reorg.
        result = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    finally:
        evm_node.w3.provider.make_request("miner_start", [])

    second.refresh_from_db()
    # Signing it would promise 11 ETH of 10: one of the two could never be mined.
    assert (result.signed, second.status, signed_tx(second)) == (0, WithdrawStatus.APPROVED, None)


# A contract that refuses every call and every payment (PUSH1 0 PUSH1 0 REVERT), hand-assembled.
REFUSER_INIT = "6005600c60003960056000f3" + "60006000fd"


def test_withdrawals_to_a_contract_that_refuses_ether_burn_no_gas_of_the_hot_wallet(hot, user, evm_node, evm_adapter):
    refuser = evm_node.send_tx({"data": "0x" + REFUSER_INIT, "gas": 100_000})["contractAddress"]
    coin = CoinConfig.objects.get(coin_id="ETH")
    assets_services.balance_credit(
        user_id=user.id, coin=coin, amount=Decimal(1), business_type=BusinessType.RECHARGE, biz_ref="fund-griefer"
    )
    before = evm_adapter.balance(hot.address)

    for n in range(3):  # the attacker's loop: apply, wait for the failure and the refund, apply again
        withdrawals_services.withdrawal_apply(
            user_id=user.id, coin_id="ETH", to_address=refuser, amount="0.02", idempotency_key=f"grief-{n}"
        )
        withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
        evm_node.mine(2)
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)

    burnt = before - evm_adapter.balance(hot.address)
    assert (evm_adapter.mined_count(hot.address), burnt) == (0, 0)  # nothing sent that the node says reverts
    waiting = WithdrawRecord.objects.filter(user=user, to_address=refuser)
    assert set(waiting.values_list("status", flat=True)) == {WithdrawStatus.APPROVED}  # each waits for an auditor
    assert Alert.objects.filter(kind="WITHDRAW_WOULD_REVERT").count() == 3  # one per withdrawal
