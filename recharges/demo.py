"""
A demo deposit on a local dev chain, so that a newcomer sees a deposit go from sent to pending to credited.

Any of the five coins (BTC on bcoin regtest, ETH and USDT-ERC20 on ganache, TRX and USDT-TRC20 on
the TRON fake) is sent from its dev chain's TEST-ONLY depositor account (chains.devsend) to the
user's deposit address. Nothing is mined here: the dev chains make blocks on their own, the scanner
records the deposit (pending) and the confirmation job credits it at the coin's confirmations,
exactly as for a real deposit. `demo_deposit_progress` tells how far it got.

Refuses anything but the dev chains (chains.devsend checks each node before building anything),
so this can never send on a real network.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from addresses import services as addresses_services
from chains import devsend
from coins import selectors as coins_selectors
from recharges import selectors as recharges_selectors
from recharges.models import RechargeRecord, RechargeStatus
from wallet_project.errors import WalletError

DEMO_CHAINS = ("BTC", "ETH", "TRON")


class DemoRefused(WalletError):
    """The demo deposit cannot be sent (dev chain not running, coin not on it, unknown user...)."""

    code = "demo_refused"


@dataclass(frozen=True)
class DemoDeposit:
    username: str
    coin_id: str
    chain_id: str
    amount: Decimal
    address: str
    tx_hash: str
    required_confirmations: int
    min_recharge_amount: Decimal
    block_seconds: float


@dataclass(frozen=True)
class DemoProgress:
    """Where a demo deposit stands: unmined, mined but not yet seen by the scanner, or its record."""

    mined_block: int | None
    status: RechargeStatus | None = None  # None: the scanner has not recorded it yet
    confirmations: int = 0
    required_confirmations: int = 0
    recharge_no: str = ""

    @property
    def finished(self) -> bool:
        return self.status is not None and self.status not in (RechargeStatus.PENDING, RechargeStatus.REORGED)


def _dev_chain(chain_id: str) -> tuple[devsend.DevChain, dict[str, object]]:
    try:
        recorded = devsend.devchain_read(path=Path(settings.DEVCHAIN_FILE))
        return devsend.DevChain(chain_id=chain_id, recorded=recorded, btc_rpc_url=settings.BTC_RPC_URL), recorded
    except devsend.NotADevChain as exc:
        raise DemoRefused(str(exc)) from None


def demo_deposit_send_irreversible(*, username: str, coin_id: str, amount: str | Decimal) -> DemoDeposit:
    """
    Send a demo deposit of coin_id on its dev chain to the user's deposit address (not waiting for blocks).

    Allocates the user's deposit address (addresses app) if the user has none.
    :raises DemoRefused: unknown coin or user, the coin's chain is not a running dev chain, its
        token is not the dev chain's, the depositor cannot pay.
    :raises WalletError: the amount is refused by the coin's rules, or no address can be allocated.
    """
    try:
        coin = coins_selectors.coin_get(coin_id=coin_id)
    except coins_selectors.UnknownCoin:
        raise DemoRefused(f"unknown coin {coin_id!r}") from None
    if coin.chain_id not in DEMO_CHAINS:
        raise DemoRefused(f"{coin.coin_id} is on {coin.chain_id}, which has no dev chain")
    # The one amount parser, as for an API client: "1e2" is refused, not sent as 100.
    checked = coins_selectors.amount_check(coin=coin, amount=amount if isinstance(amount, Decimal) else str(amount))
    value = coins_selectors.amount_to_base_units(coin=coin, amount=checked)
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise DemoRefused(f"no user named {username!r}: create one first (manage.py demo_setup creates 'demo')")
    chain, recorded = _dev_chain(coin.chain_id)
    contract = None
    if coin.contract_address:
        contract = recorded.get(coin.coin_id)
        same = isinstance(contract, str) and chain.adapter.match_key(contract) == chain.adapter.match_key(
            coin.contract_address
        )
        if not same:
            raise DemoRefused(
                f"{coin.coin_id} is configured with contract {coin.contract_address}, which the dev chain did not "
                f"deploy ({contract}): restart the dev chains after `migrate` so that they update the coin"
            )
    try:
        address = addresses_services.deposit_address_assign(user=user, coin_id=coin.coin_id).address
    except addresses_services.NoHdWallet as exc:
        raise DemoRefused(f"{exc.message} Create it first: manage.py demo_setup") from None
    try:
        sent = chain.send(role=devsend.DEPOSITOR, to_address=address, amount_base_units=value, contract=contract)
    except devsend.DevSendError as exc:
        raise DemoRefused(str(exc)) from None
    return DemoDeposit(
        username=username,
        coin_id=coin.coin_id,
        chain_id=coin.chain_id,
        amount=coins_selectors.amount_from_base_units(coin=coin, base_units=value),
        address=address,
        tx_hash=sent.tx_hash,
        required_confirmations=coin.required_confirmations,
        min_recharge_amount=coin.min_recharge_amount,
        block_seconds=float(recorded.get("block_seconds") or 0),  # type: ignore[arg-type]
    )


def demo_deposit_progress(*, deposit: DemoDeposit, chain: devsend.DevChain | None = None) -> DemoProgress:
    """
    Return how far a demo deposit got: its record (status, live confirmations) or, before the
    scanner saw it, whether its transaction is mined yet.
    """
    record = (
        RechargeRecord.objects.filter(
            coin_id=deposit.coin_id, tx_hash__iexact=deposit.tx_hash, to_address=deposit.address
        )
        .select_related("coin")
        .order_by("id")
        .first()
    )
    if record is None:
        chain = chain or _dev_chain(deposit.chain_id)[0]
        try:
            mined = chain.status(deposit.tx_hash).block_number
        except devsend.NODE_ERRORS:
            mined = None
        return DemoProgress(mined_block=mined, required_confirmations=deposit.required_confirmations)
    confirmations = recharges_selectors.recharge_confirmations(record=record, tips=recharges_selectors.chain_tips())
    return DemoProgress(
        mined_block=record.block_number,
        status=RechargeStatus(record.status),
        confirmations=min(confirmations, record.required_confirmations),
        required_confirmations=record.required_confirmations,
        recharge_no=record.recharge_no,
    )
