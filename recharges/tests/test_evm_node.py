"""Deposits found on a real EVM dev node (ganache): ETH, ERC20, several transfers, fakes, a reorg."""

from __future__ import annotations

from decimal import Decimal

import pytest
from eth_account import Account

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow
from chains.evm import EvmAdapter
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address
from recharges.tests.helpers import available, tick

pytestmark = pytest.mark.slow


@pytest.fixture
def eth(db, settings, evm_node, evm_adapter):  # noqa: F811
    # Start at the node's next block: the module's node is shared by every test here.
    settings.SCAN_START_HEIGHTS = {"ETH": evm_adapter.tip_height() + 1}
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=evm_node.contracts["USDT"])
    return evm_adapter


def _fresh_address() -> str:
    return Account.create().address  # TEST-ONLY throwaway key, only its address is used


def test_credits_eth_and_usdt_deposits_from_the_dev_node(eth, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    usdt = evm_node.contract(evm_node.contracts["USDT"])

    evm_node.send_tx({"to": address.address, "value": 3 * 10**18})
    evm_node.transact(usdt.functions.transfer(address.address, 25 * 10**6))
    tick(eth, now)
    evm_node.mine(2)
    tick(eth, now)

    assert available(user, "ETH") == Decimal(3)
    assert available(user, "USDT-ERC20") == Decimal(25)
    assert assets_selectors.ledger_mismatches() == []


def test_a_reverted_transfer_and_a_look_alike_token_credit_nothing(eth, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    usdt = evm_node.contract(evm_node.contracts["USDT"])
    fake = evm_node.contract(evm_node.token_deploy(symbol="USDT"))
    evm_node.transact(fake.functions.mint(evm_node.accounts[1].address, 10**12))

    evm_node.transact(fake.functions.transfer(address.address, 10**9), sender=1)  # same symbol, other contract
    receipt = evm_node.transact(usdt.functions.transfer(address.address, 10**15), sender=2, gas=100_000)
    assert receipt["status"] == 0  # account 2 holds no USDT: the transfer reverted on chain
    evm_node.mine(3)
    tick(eth, now)

    assert RechargeRecord.objects.count() == 0
    assert Flow.objects.count() == 0


def test_a_deposit_orphaned_by_snapshot_revert_is_reorged_and_never_credited(eth, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    snapshot = evm_node.snapshot()
    evm_node.send_tx({"to": address.address, "value": 10**18})
    tick(eth, now)
    assert RechargeRecord.objects.get().status == RechargeStatus.PENDING

    evm_node.revert(snapshot)
    evm_node.mine(3)  # the new branch, longer, without the deposit
    tick(eth, now)

    assert RechargeRecord.objects.get().status == RechargeStatus.REORGED
    assert available(user, "ETH") == 0


@pytest.mark.mysql
def test_a_spent_deposit_orphaned_then_re_mined_leaves_the_user_exactly_what_they_own(eth, evm_node, user, now):  # noqa: F811
    from recharges import selectors as recharges_selectors
    from recharges.models import AccountHold, HoldStatus
    from recharges.tests.test_reorg_debt import ledger_is_consistent, owns, position, withdraw_settled

    address = deposit_address(user=user, address=_fresh_address())
    snapshot = evm_node.snapshot()
    sender = evm_node.accounts[0]
    signed = sender.sign_transaction(
        {
            "to": address.address,
            "value": 3 * 10**18,
            "nonce": evm_node.w3.eth.get_transaction_count(sender.address, "pending"),
            "gas": 21_000,
            "gasPrice": evm_node.w3.eth.gas_price,
            "chainId": evm_node.w3.eth.chain_id,
        }
    )
    evm_node.w3.eth.send_raw_transaction(signed.raw_transaction)
    evm_node.mine(2)
    tick(eth, now)
    assert position(user) == (Decimal(3), 0, 0)
    withdraw_settled(user, Decimal(2), "W-dev-1")  # the user withdrew 2 of the 3 meanwhile

    evm_node.revert(snapshot)  # the deposit's block is orphaned: a longer branch without it
    evm_node.mine(4)
    tick(eth, now)

    record = RechargeRecord.objects.get()
    assert record.status == RechargeStatus.REORGED
    assert position(user) == (0, 0, Decimal(2))
    assert recharges_selectors.withdrawals_held(user_id=user.id) is True

    evm_node.w3.eth.send_raw_transaction(signed.raw_transaction)  # the same transaction, mined again
    evm_node.mine(2)
    tick(eth, now)

    record.refresh_from_db()
    assert (record.status, record.generation) == (RechargeStatus.CONFIRMED, 1)
    assert record.tx_hash == evm_node.w3.to_hex(signed.hash)
    assert position(user) == (Decimal(1), 0, 0)
    assert owns(user) == Decimal(1)
    assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 2
    assert sum(f.amount for f in Flow.objects.filter(user=user)) == Decimal(1)  # not a second 3 ETH
    assert AccountHold.objects.get().status == HoldStatus.REPAID
    assert recharges_selectors.withdrawals_held(user_id=user.id) is False
    ledger_is_consistent()


# A forwarder contract (hand-assembled, no compiler): any call sends its value on to the address in
# the first calldata word, i.e. CALL(gas, calldata[0:32], callvalue, 0, 0, 0, 0). How smart-contract
# wallets (a Safe), other exchanges' batch payouts and bridges pay ETH: by an internal transaction.
FORWARDER_RUNTIME = "6000600060006000346000355af100"


@pytest.fixture
def tracing(eth, evm_node):  # noqa: F811
    """The scanner's adapter with ETH_TRACE_INTERNAL_TRANSFERS on (ganache has debug_traceTransaction)."""
    return EvmAdapter(url=evm_node.url, connect_timeout=1, read_timeout=30, trace_internal=True)


def _deployed(evm_node, runtime: str) -> str:  # noqa: F811 - the fixture's node
    """Deploy hand-assembled runtime code (under 256 bytes) with a minimal constructor that returns it."""
    size = len(runtime) // 2
    init = f"60{size:02x}600c60003960{size:02x}6000f3" + runtime
    return evm_node.send_tx({"data": "0x" + init, "gas": 200_000})["contractAddress"]


def _word(address: str) -> str:
    return "0x" + address[2:].lower().rjust(64, "0")


def test_eth_a_contract_pays_to_a_deposit_address_is_credited_once(tracing, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    forwarder = _deployed(evm_node, FORWARDER_RUNTIME)
    paid = evm_node.send_tx({"to": forwarder, "value": 2 * 10**18, "data": _word(address.address), "gas": 100_000})
    assert paid["status"] == 1 and tracing.balance(address.address) == 2 * 10**18  # the ether is at the address

    tick(tracing, now)
    evm_node.mine(2)
    tick(tracing, now)
    tick(tracing, now)  # and again: nothing new

    assert available(user, "ETH") == Decimal(2)
    (record,) = RechargeRecord.objects.filter(user=user)
    assert (record.status, record.log_index, record.amount) == (RechargeStatus.CONFIRMED, -2, Decimal(2))
    assert record.tx_hash == evm_node.w3.to_hex(paid["transactionHash"])
    assert record.from_address.lower() == forwarder.lower()  # the contract that paid


def test_eth_a_contract_moved_in_a_transaction_that_reverted_is_not_credited(tracing, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    # The forwarder's CALL, then REVERT: the inner CALL returned 1, the transaction failed whole.
    reverting = _deployed(evm_node, FORWARDER_RUNTIME[:-2] + "5060006000fd")
    failed = evm_node.send_tx({"to": reverting, "value": 10**18, "data": _word(address.address), "gas": 100_000})
    assert failed["status"] == 0 and tracing.balance(address.address) == 0

    tick(tracing, now)
    evm_node.mine(2)
    tick(tracing, now)

    assert available(user, "ETH") == 0
    assert not RechargeRecord.objects.filter(user=user, status=RechargeStatus.CONFIRMED).exists()


def test_without_tracing_a_contracts_payment_is_not_seen(eth, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    forwarder = _deployed(evm_node, FORWARDER_RUNTIME)
    evm_node.send_tx({"to": forwarder, "value": 10**18, "data": _word(address.address), "gas": 100_000})

    tick(eth, now)
    evm_node.mine(2)
    tick(eth, now)

    assert available(user, "ETH") == 0  # ETH_TRACE_INTERNAL_TRANSFERS off: the node is not asked


# Pays the address in the first calldata word its value divided by 1 + 9 * (block number % 2): what
# a contract moves depends on the block it runs in (its number here; a balance, a price, a timestamp
# in the wild), so the same transaction mined again after a reorg may move other amounts.
# CALL(gas, calldata[0:32], callvalue / (1 + 9 * (NUMBER % 2)), 0, 0, 0, 0)
PARITY_PAYER_RUNTIME = "5f5f5f5f6002430660090260010134045f355af100"


def test_eth_a_contract_pays_less_when_its_transaction_is_mined_again_after_a_reorg(tracing, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    payer = _deployed(evm_node, PARITY_PAYER_RUNTIME)
    if (evm_node.w3.eth.block_number + 1) % 2:
        evm_node.mine(1)  # the payment lands at an even height: the whole value
    snapshot = evm_node.snapshot()
    sender = evm_node.accounts[0]
    signed = sender.sign_transaction(
        {
            "to": payer,
            "value": 10**18,
            "data": _word(address.address),
            "nonce": evm_node.w3.eth.get_transaction_count(sender.address, "pending"),
            "gas": 100_000,
            "gasPrice": evm_node.w3.eth.gas_price,
            "chainId": evm_node.w3.eth.chain_id,
        }
    )
    evm_node.w3.eth.send_raw_transaction(signed.raw_transaction)
    tick(tracing, now)
    assert RechargeRecord.objects.get(user=user).amount == Decimal(1)

    evm_node.revert(snapshot)  # that block is orphaned; the same transaction lands at an odd height
    evm_node.mine(1)
    evm_node.w3.eth.send_raw_transaction(signed.raw_transaction)
    evm_node.mine(2)
    assert tracing.balance(address.address) == 10**17  # a tenth arrived on the chain that stayed
    tick(tracing, now)
    tick(tracing, now)

    assert available(user, "ETH") == Decimal("0.1")
    (record,) = RechargeRecord.objects.filter(user=user)
    assert (record.status, record.log_index, record.amount) == (RechargeStatus.CONFIRMED, -2, Decimal("0.1"))


def test_eth_a_contract_deployed_where_ether_was_paid_before_is_traced_when_paid_again(tracing, evm_node, user, now):  # noqa: F811
    import rlp
    from eth_utils import keccak, to_checksum_address

    address = deposit_address(user=user, address=_fresh_address())
    deployer = evm_node.accounts[3].address
    nonce = evm_node.w3.eth.get_transaction_count(deployer)
    # A counterfactual wallet: paid at its address before its code is there (a CREATE2 wallet, a
    # contract a known account deploys at its next nonce).
    future = to_checksum_address(keccak(rlp.encode([bytes.fromhex(deployer[2:]), nonce]))[12:])
    evm_node.send_tx({"to": future, "value": 10**15})
    tick(tracing, now)  # the scanner met that address without code

    # Its code: CALL(gas, the deposit address, callvalue, 0, 0, 0, 0), on any payment (receive()).
    runtime = "5f5f5f5f3473" + address.address[2:].lower() + "5af15000"
    size = len(runtime) // 2
    init = f"60{size:02x}600c60003960{size:02x}6000f3" + runtime
    assert evm_node.send_tx({"data": "0x" + init, "gas": 200_000}, sender=3)["contractAddress"] == future
    paid = evm_node.send_tx({"to": future, "value": 2 * 10**18, "gas": 100_000})  # a plain payment, no data
    assert paid["status"] == 1 and tracing.balance(address.address) == 2 * 10**18

    tick(tracing, now)
    evm_node.mine(2)
    tick(tracing, now)

    assert available(user, "ETH") == Decimal(2)


def test_eth_a_constructor_that_pays_a_deposit_address_is_credited(tracing, evm_node, user, now):  # noqa: F811
    address = deposit_address(user=user, address=_fresh_address())
    # A contract creation (no `to`) whose constructor runs CALL(gas, the address, callvalue, 0, 0, 0, 0).
    init = "5f5f5f5f3473" + address.address[2:].lower() + "5af15000"
    created = evm_node.send_tx({"data": "0x" + init, "value": 3 * 10**18, "gas": 200_000})
    assert created["status"] == 1 and tracing.balance(address.address) == 3 * 10**18

    tick(tracing, now)
    evm_node.mine(2)
    tick(tracing, now)

    assert available(user, "ETH") == Decimal(3)
    (record,) = RechargeRecord.objects.filter(user=user)
    assert record.from_address.lower() == created["contractAddress"].lower()  # the contract being made
