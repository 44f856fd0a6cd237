"""
Deposits on TRON, against the loopback fake of the TRON HTTP API (chains.tron_fake): no TRON node
exists in any registry here. The fake checks tronpy signatures, keeps TRX balances and runs the
TRC20 contracts on a real EVM dev node behind it, so token reverts and Transfer logs are real.
Deposit addresses come from the addresses app. Every key is a TEST-ONLY throwaway key.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from tronpy.keys import PrivateKey

from assets import selectors as assets_selectors
from assets.models import Flow
from chains.testing import tron_adapter, tron_node, tron_sign  # noqa: F401
from coins.models import CoinConfig
from recharges.models import RechargeRecord, RechargeStatus, ScanCursor
from recharges.tests.conftest import assigned_address, make_user
from recharges.tests.helpers import available, tick

pytestmark = pytest.mark.slow


@pytest.fixture
def tron(db, settings, deposit_seeds, tron_node, tron_adapter):  # noqa: F811
    # The module's node is shared: each test's scanner starts at the node's next block.
    settings.SCAN_START_HEIGHTS = {"TRON": tron_adapter.tip_height() + 1}
    CoinConfig.objects.filter(chain_id="TRON").update(required_confirmations=2)
    return tron_adapter


@pytest.fixture
def usdt(tron, tron_node):  # noqa: F811
    """The configured USDT-TRC20 contract and a funded holder: (contract, holder key, holder address)."""
    key, holder = _account(tron_node, trx_sun=200_000_000)
    contract = tron_node.trc20_deploy(owner=holder, supply=10**12)
    CoinConfig.objects.filter(coin_id="USDT-TRC20").update(contract_address=contract)
    return contract, key, holder


def _account(tron_node, trx_sun: int = 0) -> tuple[bytes, str]:  # noqa: F811
    key = PrivateKey.random()  # TEST-ONLY
    address = key.public_key.to_base58check_address()
    if trx_sun:
        tron_node.fund(address, trx_sun)
    return bytes.fromhex(key.hex()), address


def _send(adapter, key: bytes, sender: str, to: str, amount: int, contract: str | None = None) -> str:
    unsigned = adapter.build_transfer(from_address=sender, to_address=to, amount_base_units=amount, contract=contract)
    return adapter.broadcast_irreversible(tron_sign(unsigned, key))


def test_a_trx_and_a_usdt_trc20_deposit_are_credited_after_confirmations(tron, tron_node, usdt, now):  # noqa: F811
    contract, holder_key, holder = usdt
    user = make_user("tron-user")
    address = assigned_address(user=user, coin_id="TRX")
    assert assigned_address(user=user, coin_id="USDT-TRC20") == address  # one address per chain
    key, sender = _account(tron_node, trx_sun=50_000_000)

    trx_tx = _send(tron, key, sender, address, 12_345_678)
    usdt_tx = _send(tron, holder_key, holder, address, 250_500_000, contract=contract)
    tron_node.mine(1)
    tick(tron, now)

    assert sorted(RechargeRecord.objects.values_list("coin_id", "tx_hash", "status")) == sorted(
        [("TRX", trx_tx, RechargeStatus.PENDING), ("USDT-TRC20", usdt_tx, RechargeStatus.PENDING)]
    )
    assert available(user, "TRX") == 0

    tron_node.mine(1)
    tick(tron, now)
    tick(tron, now)

    assert available(user, "TRX") == Decimal("12.345678")
    assert available(user, "USDT-TRC20") == Decimal("250.5")
    assert RechargeRecord.objects.filter(status=RechargeStatus.CONFIRMED).count() == 2
    assert Flow.objects.count() == 2
    assert assets_selectors.ledger_mismatches() == []


def test_a_failed_trc20_transfer_and_a_look_alike_contract_credit_nothing(tron, tron_node, usdt, now):  # noqa: F811
    contract, holder_key, holder = usdt
    user = make_user("tron-fakes")
    address = assigned_address(user=user, coin_id="USDT-TRC20")
    # A poor sender of the real contract: its transfer reverts on chain ("balance too low").
    poor_key, poor = _account(tron_node, trx_sun=100_000_000)
    # A token of another contract with the same name and symbol, held by a scammer.
    scam_key, scammer = _account(tron_node, trx_sun=100_000_000)
    look_alike = tron_node.trc20_deploy(name="Tether USD", symbol="USDT", owner=scammer, supply=10**12)

    reverted = _send(tron, poor_key, poor, address, 5_000_000, contract=contract)
    faked = _send(tron, scam_key, scammer, address, 9_000_000, contract=look_alike)
    genuine = _send(tron, holder_key, holder, address, 1_000_000, contract=contract)  # the control
    tron_node.mine(1)
    height = tron.tip_height()
    tron_node.mine(2)
    tick(tron, now)

    info = tron_node.post("/wallet/gettransactioninfobyid", {"value": reverted})
    assert info["receipt"]["result"] == "REVERT"  # it was mined, and failed
    assert tron.balance(address, contract=look_alike) == 9_000_000  # the look-alike really moved
    assert ScanCursor.objects.get(chain_id="TRON").height >= height
    assert list(RechargeRecord.objects.values_list("tx_hash", "status")) == [(genuine, RechargeStatus.CONFIRMED)]
    assert not RechargeRecord.objects.filter(tx_hash__in=[reverted, faked]).exists()
    assert available(user, "USDT-TRC20") == Decimal(1)
    assert Flow.objects.count() == 1
