"""
Building, checking and signing one transfer of a locked withdrawal: the step every transaction of
a payout shares (its first one, one by one or in a group; a TRON re-sign after expiry; the ops
re-sign with a new nonce; a replacement). Nothing is stored here.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from addresses import signer
from chains.base import ChainAdapter, Shortfall, SignedTx, UnsignedTx
from chains.evm import NATIVE_GAS
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from withdrawals.models import Payout, WithdrawRecord
from withdrawals.payout import evm_run, fees, reserve
from withdrawals.payout.common import NONCE_CHAINS, PayoutWaits


def sign_transfer(
    *,
    record: WithdrawRecord,
    coin: CoinConfig,
    adapter: ChainAdapter,
    from_address: str,
    nonce: int | None,
    terms: dict[str, int],
    payout: Payout | None,
    run: evm_run.EvmRun | None = None,
) -> tuple[UnsignedTx, SignedTx]:
    """
    Build the transfer of a locked withdrawal with the chain's fee terms, check that from_address can
    pay it beside its other payouts not in a block yet (payout: the one this transaction belongs to,
    whose own amount is not counted twice), and sign it. Nothing is stored here.

    :raises PayoutWaits: the hot address is short (WITHDRAW_HOT_WALLET_SHORT), the fee is above its
        ceiling (WITHDRAW_FEE_CEILING), or the node's simulation says the EVM transfer would fail
        (WITHDRAW_WOULD_REVERT).
    :raises evm_run.Reread: (with a run) its account of from_address was short: read it again.

    With the EVM payout run's account (run; nonce from run.nonce_take) nothing is read from the node
    for ether to a recipient without code, and the address's funds are checked against the account
    (evm_run says why both are safe); otherwise, as for replacements, the node is read here.
    """
    amount = coins_selectors.amount_to_base_units(coin=coin, amount=record.actual_amount)
    contract = None if coins_selectors.coin_is_native(coin=coin) else coin.contract_address
    chain_terms: dict[str, Any]
    plain = run is not None and run.plain(coin=coin, record=record)
    if coin.chain_id in NONCE_CHAINS:
        chain_terms = {"nonce": nonce, "gas_margin": settings.ETH_GAS_LIMIT_MARGIN, **terms}
        if plain:
            chain_terms["gas_limit"] = NATIVE_GAS  # no code runs at the recipient: exactly 21,000
    else:  # TRON: no nonce; the transaction expires instead (see withdrawals_confirm)
        chain_terms = {"expiration_ms": settings.WITHDRAW_TRON_EXPIRATION_SECONDS * 1000}
        if contract is not None:
            energy = adapter.estimate_energy(  # type: ignore[attr-defined]
                owner=from_address, contract=contract, to_address=record.to_address, amount_base_units=amount
            )
            price = adapter.chain_parameters()["getEnergyFee"]  # type: ignore[attr-defined]
            chain_terms["fee_limit_sun"] = fees.tron_fee_limit(
                energy=energy, energy_price=price, withdraw_no=record.withdraw_no
            )
    unsigned = adapter.build_transfer(
        from_address=from_address,
        to_address=record.to_address,
        amount_base_units=amount,
        contract=contract,
        **chain_terms,
    )
    if run is not None:
        short = run.shortfall(address=from_address, unsigned=unsigned, coin=coin)
    else:
        # Read before the balance (in shortfall): a block mined between the two reads then makes the
        # reserve err high (a payout counted though the balance already shows it), never low.
        mined_below = adapter.mined_count(from_address) if coin.chain_id in NONCE_CHAINS else None  # type: ignore[attr-defined]
        reserved_native, reserved_token = reserve.unmined_payouts(
            coin=coin, from_address=from_address, payout=payout, mined_below=mined_below
        )
        short = adapter.shortfall(unsigned, reserved_native=reserved_native, reserved_token=reserved_token)  # type: ignore[attr-defined]
    if short is not None:
        # Rolled back with the nonce: nothing is signed that the node would refuse or that would revert.
        raise PayoutWaits(
            _shortfall_text(record=record, coin=coin, short=short), alert_kind="WITHDRAW_HOT_WALLET_SHORT"
        )
    if coin.chain_id in NONCE_CHAINS and not plain:
        # The node runs it first: a transfer it says fails (a recipient contract that refuses ether,
        # a token that reverts for this recipient) would only burn the hot address's gas, and the
        # user could repeat it at no cost. Rolled back with the nonce; it waits for an auditor.
        failure = adapter.simulate(unsigned)  # type: ignore[attr-defined]
        if failure is not None:
            raise PayoutWaits(
                _would_fail_text(record=record, coin=coin, reason=failure), alert_kind="WITHDRAW_WOULD_REVERT"
            )
    return unsigned, signer.signer_for(coin.chain_id)(unsigned)


def _would_fail_text(*, record: WithdrawRecord, coin: CoinConfig, reason: str) -> str:
    return (
        f"withdrawal {record.withdraw_no} ({record.actual_amount.normalize():f} {coin.coin_id} to "
        f"{record.to_address}) waits unsigned: the node's simulation of its transfer fails ({reason}), so on "
        "chain it would fail too and burn the hot address's gas; an auditor should reject it (its amount is "
        "unfrozen for the user); it is simulated again on every payout run meanwhile"
    )


def _shortfall_text(*, record: WithdrawRecord, coin: CoinConfig, short: Shortfall) -> str:
    """Which hot address lacks how much of which coin (the chain's own for gas and fees) to pay the withdrawal."""
    lacking = coin if short.contract is not None else coins_selectors.chain_native_coin(chain_id=coin.chain_id)

    def amount(base_units: int) -> str:
        value = coins_selectors.amount_from_base_units(coin=lacking, base_units=base_units)
        return f"{value.normalize():f} {lacking.coin_id}"

    return (
        f"withdrawal {record.withdraw_no} ({record.actual_amount.normalize():f} {coin.coin_id}) waits unsigned: "
        f"hot address {short.address} holds {amount(short.free)} free of its payouts not in a block yet, the "
        f"transfer needs {amount(short.needed)} ({short.what}): {amount(short.missing)} short; top it up"
    )
