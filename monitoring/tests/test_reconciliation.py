"""
Reconciliation against the real dev chains (ganache for ETH and USDT-ERC20, bcoin regtest for BTC,
the TRON fake for TRX and USDT-TRC20) and MariaDB: a mixed run balances to the last unit on every
coin; a deleted flow, a hot address drained behind the system's back and a surplus on chain are
each found, with one critical alert and the coin's breaker tripped. Every key is TEST-ONLY.
"""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import io
import itertools
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from eth_account import Account
from tronpy.keys import PrivateKey

from addresses import services as addresses_services
from addresses import signer
from addresses.models import AddressType
from addresses.tests.conftest import TEST_KEK_V1, kek_env
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import BusinessType, Flow, HouseAccount, HouseFlow
from chains.testing import (  # noqa: F401 - fixtures
    btc_adapter,
    btc_coinbase_utxo,
    btc_node,
    btc_sign,
    evm_adapter,
    evm_node,
    tron_adapter,
    tron_node,
    tron_sign,
)
from coins.models import CoinConfig
from controls.models import BreakerSource, CoinBreaker
from monitoring import reconciliation
from monitoring.models import Alert, ReconciliationRun, ReconciliationStatus, Severity
from recharges import services as recharges_services
from recharges import watchlist
from recharges.models import RechargeStatus, TreasuryReceipt, TreasuryStatus
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import PayoutTx, WithdrawRecord, WithdrawStatus

pytestmark = pytest.mark.slow

ONE_ETH = 10**18
USDT = 10**6
TRX = 10**6


@pytest.fixture(autouse=True)
def _fresh_scanner():
    watchlist.watchlist_reset()
    yield
    watchlist.watchlist_reset()


@pytest.fixture
def mnemonics(db, monkeypatch, settings, tmp_path) -> dict[tuple[str, int], str]:
    """Fresh deposit and hot seeds on every chain: the nodes live for the module, the addresses per test."""
    monkeypatch.setenv("WALLET_KEK", kek_env((1, TEST_KEK_V1)))
    settings.WALLET_KEK_FILE = ""
    settings.WALLET_DEV_KEK_FILE = tmp_path / "DEV-ONLY-kek.txt"
    settings.BTC_NETWORK = "regtest"
    settings.BTC_REGTEST_HRP = "rb"
    settings.SCAN_START_HEIGHTS = {}  # every scanner starts at its node's tip
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    seeds = {}
    for chain_id in ("BTC", "ETH", "TRON"):
        for purpose in (AddressType.USER_DEPOSIT, AddressType.HOT):
            words = signer.mnemonic_generate()
            signer.hd_wallet_create(chain_id=chain_id, purpose=purpose, mnemonic=words, label="test-only")
            seeds[(chain_id, purpose)] = words
    return seeds


def make_user(name: str):
    return get_user_model().objects.create_user(username=name, password=f"{name}-password-1")


def deposit_address(user, coin_id: str) -> str:
    return addresses_services.deposit_address_assign(user=user, coin_id=coin_id).address


def tick(adapter, chain_id: str) -> None:
    """A beat tick of the chain: scan until caught up, confirm deposits, pay and confirm withdrawals."""
    now = timezone.now()
    for _ in range(50):
        result = recharges_services.deposits_scan_batch(chain_id=chain_id, now=now, adapter=adapter)
        if result.error is not None or result.caught_up:
            break
    assert result.error is None, result.error
    recharges_services.deposits_confirm(chain_id=chain_id, now=now, adapter=adapter)


def balanced(coin_id: str, adapter=None) -> ReconciliationRun:
    run = reconciliation.reconcile_coin(coin_id=coin_id, adapter=adapter)
    assert run.error == "", run.error
    assert (run.status, run.ledger_mismatches, run.difference) == (ReconciliationStatus.BALANCED, 0, 0), (
        run.difference,
        run.details,
    )
    return run


def nothing_tripped() -> None:
    assert not Alert.objects.filter(kind=reconciliation.ALERT_KIND).exists()
    assert not CoinBreaker.objects.filter(tripped=True).exists()


def tripped_once(coin_id: str) -> Alert:
    """The one critical alert of the coin's difference, and its breaker tripped by reconciliation."""
    (alert,) = Alert.objects.filter(kind=reconciliation.ALERT_KIND)
    assert (alert.severity, alert.subject) == (Severity.CRITICAL, f"coin {coin_id}")
    breaker = CoinBreaker.objects.get(coin_id=coin_id)
    assert (breaker.tripped, breaker.source) == (True, BreakerSource.RECONCILIATION)
    assert list(CoinBreaker.objects.filter(tripped=True).values_list("coin_id", flat=True)) == [coin_id]
    return alert


# --- the ledger against itself ------------------------------------------------------------------


def test_runs_between_full_ones_read_only_users_with_new_flows_and_the_daily_one_reads_all(db, settings):
    settings.RECONCILE_LATE_FLOW_SECONDS = 0
    eth = CoinConfig.objects.get(coin_id="ETH")
    alice, bob = make_user("ledger-alice"), make_user("ledger-bob")

    def credit(user, ref: str) -> None:
        assets_services.balance_credit(
            user_id=user.id, coin=eth, amount=Decimal(1), business_type=BusinessType.RECHARGE, biz_ref=ref
        )

    credit(alice, "a1")
    credit(alice, "a2")
    first = reconciliation.reconcile_coin(coin_id="ETH")
    Flow.objects.filter(biz_ref="a1").delete()  # an old flow of alice's, gone behind the ledger's back
    credit(bob, "b1")
    incremental = reconciliation.reconcile_coin(coin_id="ETH")
    full = reconciliation.reconcile_coin(coin_id="ETH", full=True)

    assert (first.full, first.flows_checked, first.ledger_mismatches) == (True, 2, 0)
    assert first.status == ReconciliationStatus.NOT_RUN and "scanner has not started" in first.error
    assert (incremental.full, incremental.flows_checked, incremental.ledger_mismatches) == (False, 1, 0)  # bob's
    assert incremental.last_flow_id == Flow.objects.order_by("-id").first().id
    with pytest.raises(CommandError, match="difference found: ETH"):
        call_command("reconcile", coin="ETH", full=True, stdout=io.StringIO())
    assert (full.full, full.flows_checked, full.ledger_mismatches) == (True, 2, 1)
    assert full.status == ReconciliationStatus.DIFFERENCE  # no chain needed to see the ledger is wrong
    assert full.details["mismatches"][0]["user_id"] == alice.id
    assert tripped_once("ETH").count == 2  # the command's run repeated it


# --- ETH and USDT-ERC20 on ganache ------------------------------------------------------------


@pytest.fixture
def eth(mnemonics, evm_node, evm_adapter):
    """A withdraw-pool hot address funded from outside (20 ETH, 5,000 USDT), booked as treasury receipts."""
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=2)
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=evm_node.contracts["USDT"])
    (hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw", count=1)
    recharges_services.scan_cursor_ensure(chain_id="ETH", adapter=evm_adapter)
    evm_node.send_tx({"to": hot.address, "value": 20 * ONE_ETH})
    evm_node.transact(evm_node.contract(evm_node.contracts["USDT"]).functions.transfer(hot.address, 5000 * USDT))
    evm_node.mine(1)
    tick(evm_adapter, "ETH")
    assert sorted(TreasuryReceipt.objects.values_list("coin_id", "amount", "status")) == [
        ("ETH", Decimal(20), TreasuryStatus.BOOKED),
        ("USDT-ERC20", Decimal(5000), TreasuryStatus.BOOKED),
    ]
    return hot


def _eth_withdraw(user, coin_id: str, amount: str, key: str, to: str | None = None) -> WithdrawRecord:
    record = withdrawals_services.withdrawal_apply(
        user_id=user.id,
        coin_id=coin_id,
        to_address=to or Account.create().address,  # TEST-ONLY
        amount=amount,
        idempotency_key=key,
    )
    assert record.status in (WithdrawStatus.APPROVED, WithdrawStatus.COMPLETED)
    return record


def _eth_deposits(evm_node, evm_adapter):
    alice, bob, carol = make_user("alice"), make_user("bob"), make_user("carol")
    usdt = evm_node.contract(evm_node.contracts["USDT"])
    evm_node.send_tx({"to": deposit_address(alice, "ETH"), "value": 7 * ONE_ETH})
    evm_node.transact(usdt.functions.transfer(deposit_address(alice, "USDT-ERC20"), 1500 * USDT))
    evm_node.send_tx({"to": deposit_address(bob, "ETH"), "value": 3 * ONE_ETH})
    evm_node.send_tx({"to": deposit_address(carol, "ETH"), "value": 5 * 10**14})  # 0.0005: below the minimum
    tick(evm_adapter, "ETH")
    evm_node.mine(1)
    tick(evm_adapter, "ETH")
    return alice, bob, carol


def test_eth_and_usdt_erc20_balance_to_the_last_unit_through_deposits_withdrawals_and_payouts(
    eth, evm_node, evm_adapter
):
    alice, bob, carol = _eth_deposits(evm_node, evm_adapter)
    balanced("ETH", evm_adapter)  # credited, and the dust below the minimum unclaimed
    eth_out = _eth_withdraw(alice, "ETH", "1.5", "a1")
    usdt_out = _eth_withdraw(alice, "USDT-ERC20", "100", "a2")
    internal = _eth_withdraw(bob, "ETH", "0.5", "b1", to=deposit_address(carol, "ETH"))  # another user's: off chain
    paid = withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    assert paid.broadcast == 2

    # Mined, not yet at its confirmations: the payouts and their gas are outbound, in flight.
    in_flight = balanced("ETH", evm_adapter)
    balanced("USDT-ERC20", evm_adapter)
    evm_node.mine(1)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    evm_node.mine(1)
    tick(evm_adapter, "ETH")
    eth_run = balanced("ETH", evm_adapter)
    usdt_run = balanced("USDT-ERC20", evm_adapter)

    for record in (eth_out, usdt_out, internal):
        record.refresh_from_db()
        assert record.status == WithdrawStatus.COMPLETED
    gas = sum(
        Decimal(evm_adapter.tx_status(tx.tx_hash).fee) / ONE_ETH for tx in PayoutTx.objects.filter(status="MINED")
    )
    assert in_flight.outbound == Decimal("1.497") + gas  # the ETH paid out and the gas of both payouts
    assert (eth_run.outbound, usdt_run.outbound, eth_run.inbound) == (0, 0, 0)
    assert assets_selectors.house_balances(coin_id="ETH") == {
        HouseAccount.TREASURY: Decimal(20),
        HouseAccount.WITHDRAW_FEES: Decimal("0.003"),  # the internal transfer carries none
        HouseAccount.NETWORK_FEES: -gas,  # to the wei, from the receipts
        HouseAccount.UNCLAIMED: Decimal("0.0005"),
    }
    assert assets_selectors.house_balances(coin_id="USDT-ERC20") == {
        HouseAccount.TREASURY: Decimal(5000),
        HouseAccount.WITHDRAW_FEES: Decimal(5),
    }
    assert HouseFlow.objects.filter(business_type=BusinessType.HOUSE_NETWORK_FEE).count() == 2
    assert eth_run.on_chain == Decimal(20 + 7 + 3) + Decimal("0.0005") - Decimal("1.497") - gas
    assert assets_selectors.house_mismatches() == [] and assets_selectors.ledger_mismatches() == []
    nothing_tripped()

    # Replayed, the settlement books nothing twice.
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    tick(evm_adapter, "ETH")
    balanced("ETH", evm_adapter)


def test_a_reverted_payout_still_books_the_gas_it_paid(eth, evm_node, evm_adapter):
    alice, _, _ = _eth_deposits(evm_node, evm_adapter)
    # A token that starts blocking transfers once the payout was simulated and signed: it reverts.
    token = evm_node.token_deploy(contract="BlockableToken")
    contract = evm_node.contract(token, "BlockableToken")
    evm_node.transact(contract.functions.mint(eth.address, 10**12))
    CoinConfig.objects.filter(coin_id="USDT-ERC20").update(contract_address=token)
    record = _eth_withdraw(alice, "USDT-ERC20", "25", "r1")

    def block_after_signing(step: str) -> None:
        if step == "pay.signed":
            evm_node.transact(contract.functions.setTransfersBlocked(True))

    withdrawals_payout.fault_hook = block_after_signing
    try:
        withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)
    finally:
        withdrawals_payout.fault_hook = None
    evm_node.mine(2)
    withdrawals_payout.withdrawals_confirm(chain_id="ETH", adapter=evm_adapter)
    tick(evm_adapter, "ETH")

    record.refresh_from_db()
    (tx,) = PayoutTx.objects.all()
    gas = Decimal(evm_adapter.tx_status(tx.tx_hash).fee) / ONE_ETH
    assert record.status == WithdrawStatus.FAILED and gas > 0
    fee = HouseFlow.objects.get(business_type=BusinessType.HOUSE_NETWORK_FEE)
    assert (fee.coin_id, fee.amount, fee.ref_tx_hash) == ("ETH", -gas, tx.tx_hash)
    assert not HouseFlow.objects.filter(business_type=BusinessType.HOUSE_WITHDRAW_FEE).exists()  # nothing paid
    balanced("ETH", evm_adapter)


def test_a_deleted_flow_is_found_alerted_once_and_trips_the_breaker(eth, evm_node, evm_adapter):
    alice, _, _ = _eth_deposits(evm_node, evm_adapter)
    balanced("ETH", evm_adapter)
    Flow.objects.filter(user=alice, coin_id="ETH").delete()  # by hand, behind the ledger's back

    first = reconciliation.reconcile_coin(coin_id="ETH", adapter=evm_adapter, full=True)
    again = reconciliation.reconcile_coin(coin_id="ETH", adapter=evm_adapter, full=True)

    assert (first.status, first.ledger_mismatches, first.difference) == (ReconciliationStatus.DIFFERENCE, 1, 0)
    assert first.details["mismatches"][0]["user_id"] == alice.id
    assert again.status == ReconciliationStatus.DIFFERENCE
    alert = tripped_once("ETH")
    assert alert.count == 2 and "1 balance row(s) differ" in alert.message
    balanced("USDT-ERC20", evm_adapter)  # the other coin of the chain is untouched


def test_a_hot_address_drained_behind_the_systems_back_is_a_shortfall(eth, mnemonics, evm_node, evm_adapter):
    _eth_deposits(evm_node, evm_adapter)
    balanced("ETH", evm_adapter)
    key = Account.from_mnemonic(mnemonics[("ETH", AddressType.HOT)], account_path=eth.derivation_path)
    assert key.address == eth.address
    thief = Account.create().address  # TEST-ONLY
    signed = key.sign_transaction(
        {
            "to": thief,
            "value": 2 * ONE_ETH,
            "gas": 21_000,
            "gasPrice": evm_node.w3.eth.gas_price,
            "nonce": evm_node.w3.eth.get_transaction_count(eth.address),
            "chainId": evm_node.w3.eth.chain_id,
        }
    )
    evm_node.w3.eth.send_raw_transaction(signed.raw_transaction)
    gas = 21_000 * Decimal(evm_node.w3.eth.get_transaction(signed.hash)["gasPrice"]) / ONE_ETH

    run = reconciliation.reconcile_coin(coin_id="ETH", adapter=evm_adapter)

    assert run.status == ReconciliationStatus.DIFFERENCE
    assert run.difference == 2 + gas  # the ledger holds what the chain lost, to the wei
    alert = tripped_once("ETH")
    assert "shortfall on chain" in alert.message
    tick(evm_adapter, "ETH")  # scanned: still unexplained
    assert reconciliation.reconcile_coin(coin_id="ETH", adapter=evm_adapter).difference == 2 + gas


def test_a_surplus_on_chain_is_found(eth, evm_node, evm_adapter):
    _eth_deposits(evm_node, evm_adapter)
    balanced("ETH", evm_adapter)
    held = evm_adapter.balance(eth.address)
    # Money appears on the hot address with no transaction to see: the dev node's balance is set.
    evm_node.w3.provider.make_request("evm_setAccountBalance", [eth.address, hex(held + 3 * ONE_ETH)])

    run = reconciliation.reconcile_coin(coin_id="ETH", adapter=evm_adapter)

    assert (run.status, run.difference) == (ReconciliationStatus.DIFFERENCE, Decimal(-3))
    assert "surplus on chain" in tripped_once("ETH").message


# --- TRX and USDT-TRC20 on the TRON fake ------------------------------------------------------


def _tron_account(tron_node, trx_sun: int) -> tuple[bytes, str]:
    key = PrivateKey.random()  # TEST-ONLY
    address = key.public_key.to_base58check_address()
    tron_node.fund(address, trx_sun)  # out of band: an outside account, not the exchange's
    return bytes.fromhex(key.hex()), address


def _tron_send(adapter, key: bytes, sender: str, to: str, amount: int, contract: str | None = None) -> str:
    unsigned = adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=amount, contract=contract)
    return adapter.broadcast_irreversible(tron_sign(unsigned, key))


def test_trx_and_usdt_trc20_balance_to_the_last_unit(mnemonics, tron_node, tron_adapter):
    CoinConfig.objects.filter(chain_id="TRON").update(required_confirmations=2)
    outside_key, outside = _tron_account(tron_node, 50_000 * TRX)
    usdt = tron_node.trc20_deploy(owner=outside, supply=100_000 * USDT)
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=usdt)
    (hot,) = addresses_services.hot_addresses_create(chain_id="TRON", wallet_type="withdraw", count=1)
    recharges_services.scan_cursor_ensure(chain_id="TRON", adapter=tron_adapter)
    _tron_send(tron_adapter, outside_key, outside, hot.address, 5_000 * TRX)  # treasury receipts
    _tron_send(tron_adapter, outside_key, outside, hot.address, 10_000 * USDT, contract=usdt)
    alice, bob = make_user("tron-alice"), make_user("tron-bob")
    _tron_send(tron_adapter, outside_key, outside, deposit_address(alice, "TRX"), 800 * TRX)
    _tron_send(tron_adapter, outside_key, outside, deposit_address(alice, "USDT-TRC20"), 900 * USDT, contract=usdt)
    _tron_send(tron_adapter, outside_key, outside, deposit_address(bob, "TRX"), 500_000)  # 0.5 TRX: unclaimed
    tron_node.mine(1)
    tick(tron_adapter, "TRON")
    tron_node.mine(1)
    tick(tron_adapter, "TRON")
    balanced("TRX", tron_adapter)
    balanced("USDT-TRC20", tron_adapter)

    trx_out = _tron_withdraw(alice, "TRX", "50", "t1")
    usdt_out = _tron_withdraw(alice, "USDT-TRC20", "100", "t2")
    withdrawals_payout.withdrawals_pay(chain_id="TRON", adapter=tron_adapter)
    tron_node.mine(1)
    balanced("TRX", tron_adapter)  # mined, not settled: outbound in flight
    balanced("USDT-TRC20", tron_adapter)
    tron_node.mine(1)
    withdrawals_payout.withdrawals_confirm(chain_id="TRON", adapter=tron_adapter)
    tick(tron_adapter, "TRON")

    for record in (trx_out, usdt_out):
        record.refresh_from_db()
        assert record.status == WithdrawStatus.COMPLETED
    trx = balanced("TRX", tron_adapter)
    balanced("USDT-TRC20", tron_adapter)
    fees = sum(Decimal(tron_adapter.tx_status(tx.tx_hash).fee) / TRX for tx in PayoutTx.objects.all())
    house = assets_selectors.house_balances(coin_id="TRX")
    assert house[HouseAccount.WITHDRAW_FEES] == 1 and house[HouseAccount.UNCLAIMED] == Decimal("0.5")
    assert house.get(HouseAccount.NETWORK_FEES, Decimal(0)) == -fees
    assert trx.on_chain == Decimal(5000 + 800) + Decimal("0.5") - 49 - fees
    nothing_tripped()


def _tron_withdraw(user, coin_id: str, amount: str, key: str) -> WithdrawRecord:
    record = withdrawals_services.withdrawal_apply(
        user_id=user.id,
        coin_id=coin_id,
        to_address=PrivateKey.random().public_key.to_base58check_address(),  # TEST-ONLY
        amount=amount,
        idempotency_key=key,
    )
    assert record.status == WithdrawStatus.APPROVED
    return record


# --- BTC deposits on bcoin regtest, with the UTXO set --------------------------------------------

_coinbase_heights = itertools.count(1)


def _btc_pay(btc_adapter, btc_node, payments: list[tuple[str, int]]) -> str:
    (to, amount), *more = payments
    unsigned = btc_adapter.build_transfer(
        from_address=btc_node.miner_address,
        to_address=to,
        amount_base_units=amount,
        outputs=more,
        utxos=[btc_coinbase_utxo(btc_node, next(_coinbase_heights))],
        fee_rate_sat_vb=3,
    )
    signed = btc_sign(unsigned, btc_node.miner_private_key)
    assert btc_adapter.broadcast_irreversible(signed) == signed.tx_hash
    return signed.tx_hash


def test_btc_deposits_and_a_hot_wallet_funded_from_outside_balance_to_the_satoshi(mnemonics, btc_node, btc_adapter):
    CoinConfig.objects.filter(coin_id="BTC").update(required_confirmations=2)
    (hot,) = addresses_services.hot_addresses_create(chain_id="BTC", wallet_type="withdraw", count=1)
    recharges_services.scan_cursor_ensure(chain_id="BTC", adapter=btc_adapter)
    users = [make_user(f"btc-{i}") for i in range(3)]
    _btc_pay(
        btc_adapter,
        btc_node,
        [
            (hot.address, 250_000_000),  # a treasury receipt: no output of ours is spent
            (deposit_address(users[0], "BTC"), 100_000_001),
            (deposit_address(users[1], "BTC"), 29_000_000),
            (deposit_address(users[2], "BTC"), 5_000),  # below the minimum: unclaimed
        ],
    )
    btc_node.mine(1)
    tick(btc_adapter, "BTC")
    pending = balanced("BTC", btc_adapter)  # on chain, waiting for confirmations: inbound
    btc_node.mine(1)
    tick(btc_adapter, "BTC")
    run = balanced("BTC", btc_adapter)

    assert pending.inbound == Decimal("3.79005001") and pending.on_chain == Decimal("3.79005001")
    assert (run.on_chain, run.inbound, run.users_total) == (Decimal("3.79005001"), 0, Decimal("1.29000001"))
    assert assets_selectors.house_balances(coin_id="BTC") == {
        HouseAccount.TREASURY: Decimal("2.5"),
        HouseAccount.UNCLAIMED: Decimal("0.00005"),
    }
    assert sorted(TreasuryReceipt.objects.values_list("coin_id", "status")) == [("BTC", TreasuryStatus.BOOKED)]
    assert RechargeStatus.BELOW_MINIMUM in set(
        users[2].rechargerecord_set.values_list("status", flat=True)  # type: ignore[attr-defined]
    )
    nothing_tripped()
