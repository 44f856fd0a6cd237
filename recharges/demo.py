"""
A demo deposit on the local EVM dev chain, so that a newcomer sees a deposit go from pending to credited.

ETH or the dev chain's test USDT is sent from ganache's first deterministic account (a public,
TEST-ONLY key that funds nothing outside a dev chain) to the user's deposit address, then blocks
are mined until the coin's required confirmations are reached. The scanner and the confirmation
job do the rest, exactly as for a real deposit.

Refuses anything but the dev chain: the node must answer with the dev chain id (1337) and the
coin must live on the EVM chain, so this can never send on a real network.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from addresses import services as addresses_services
from chains.base import ChainError, SignedTx
from chains.devnodes import EVM_CHAIN_ID, evm_accounts
from chains.evm import EvmAdapter
from chains.rpc import HttpNode
from coins import selectors as coins_selectors
from wallet_project.errors import WalletError

DEMO_CHAIN = "ETH"
RECEIPT_WAIT_SECONDS = 10.0
RESTART = "`python -m chains.devnodes serve`"


class DemoRefused(WalletError):
    """The demo deposit cannot be sent (dev chain not running, coin not on it, unknown user...)."""

    code = "demo_refused"


@dataclass(frozen=True)
class DemoDeposit:
    username: str
    coin_id: str
    amount: Decimal
    address: str
    tx_hash: str
    block_number: int
    mined_blocks: int
    required_confirmations: int
    min_recharge_amount: Decimal
    node_url: str


def devchain_read(*, path: Path) -> dict[str, object]:
    """
    Return what `python -m chains.devnodes serve` recorded (node URLs, test contracts).

    :raises DemoRefused: no such file (the dev chain was never started here) or not JSON.
    """
    try:
        recorded = json.loads(path.read_text())
    except FileNotFoundError:
        raise DemoRefused(
            f"the dev chain is not running ({path} is missing): start it with `python -m chains.devnodes serve`"
        ) from None
    except (OSError, ValueError):
        raise DemoRefused(f"{path} is unreadable: restart the dev chain ({RESTART})") from None
    if not isinstance(recorded, dict) or not isinstance(recorded.get("ETH_RPC_URL"), str):
        raise DemoRefused(f"{path} names no EVM node: restart the dev chain ({RESTART})")
    return recorded


def _dev_node(url: str) -> EvmAdapter:
    adapter = EvmAdapter(url=url, connect_timeout=1, read_timeout=10)
    try:
        chain_id = adapter.network_id()
    except (ChainError, OSError, ValueError):
        raise DemoRefused(
            f"the dev chain is not running (no EVM node answers at {url}): start it with "
            "`python -m chains.devnodes serve`"
        ) from None
    if chain_id != EVM_CHAIN_ID:
        raise DemoRefused(f"the node at {url} is chain {chain_id}, not the dev chain ({EVM_CHAIN_ID}): not sending")
    return adapter


def demo_deposit_send_irreversible(*, username: str, coin_id: str, amount: str | Decimal) -> DemoDeposit:
    """
    Send a demo deposit of coin_id on the EVM dev chain to the user's deposit address; mine its confirmations.

    Allocates the user's deposit address (addresses app) if the user has none.
    :raises DemoRefused: the coin is not on the dev chain, the dev chain is not running, unknown user.
    :raises WalletError: the amount is refused by the coin's rules, or no address can be allocated.
    """
    try:
        coin = coins_selectors.coin_get(coin_id=coin_id)
    except coins_selectors.UnknownCoin:
        raise DemoRefused(f"unknown coin {coin_id!r}") from None
    if coin.chain_id != DEMO_CHAIN:
        raise DemoRefused(f"{coin.coin_id} is on {coin.chain_id}, not on the EVM dev chain: use ETH or USDT-ERC20")
    recorded = devchain_read(path=Path(settings.DEVCHAIN_FILE))
    url = str(recorded["ETH_RPC_URL"])
    adapter = _dev_node(url)
    contract = None
    if coin.contract_address:
        contract = recorded.get(coin.coin_id)
        if not isinstance(contract, str) or adapter.match_key(contract) != adapter.match_key(coin.contract_address):
            raise DemoRefused(
                f"{coin.coin_id} is configured with contract {coin.contract_address}, which the dev chain did not "
                f"deploy ({contract}): restart the dev chain after `migrate` so that it updates the coin"
            )
    # The one amount parser, as for an API client: "1e2" is refused, not sent as 100.
    checked = coins_selectors.amount_check(coin=coin, amount=amount if isinstance(amount, Decimal) else str(amount))
    value = coins_selectors.amount_to_base_units(coin=coin, amount=checked)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise DemoRefused(f"no user named {username!r}: create one first (e.g. POST /api/v1/auth/register)")
    try:
        address = addresses_services.deposit_address_assign(user=user, coin_id=coin.coin_id).address
    except addresses_services.NoHdWallet as exc:
        raise DemoRefused(
            f"{exc.message} Create it first: manage.py create_hd_wallet --chain ETH --backup-file PATH"
        ) from None

    funder = evm_accounts(1)[0]  # TEST-ONLY ganache key
    unsigned = adapter.build_transfer(
        from_address=funder.address, to_address=address, amount_base_units=value, contract=contract
    )
    signed = funder.sign_transaction(unsigned.payload)
    tx_hash = adapter.broadcast_irreversible(
        SignedTx(tx_hash="0x" + signed.hash.hex().removeprefix("0x"), raw=signed.raw_transaction.hex())
    )
    status = adapter.tx_status(tx_hash)
    deadline = time.monotonic() + RECEIPT_WAIT_SECONDS
    while status.block_number is None and time.monotonic() < deadline:
        time.sleep(0.1)
        status = adapter.tx_status(tx_hash)
    if status.block_number is None:
        raise DemoRefused(f"{tx_hash} was not mined within {RECEIPT_WAIT_SECONDS:.0f} s")
    if status.success is not True:
        raise DemoRefused(f"{tx_hash} failed on the dev chain (does the funded account hold enough {coin.coin_id}?)")
    # Ganache mines one block per transaction and none otherwise: mine the confirmations.
    missing = max(status.block_number + coin.required_confirmations - 1 - adapter.tip_height(), 0)
    node = HttpNode(url, name="dev chain", connect_timeout=1, read_timeout=10)
    for _ in range(missing):
        node.call("evm_mine")
    return DemoDeposit(
        username=username,
        coin_id=coin.coin_id,
        amount=coins_selectors.amount_from_base_units(coin=coin, base_units=value),
        address=address,
        tx_hash=tx_hash,
        block_number=status.block_number,
        mined_blocks=missing,
        required_confirmations=coin.required_confirmations,
        min_recharge_amount=coin.min_recharge_amount,
        node_url=url,
    )
