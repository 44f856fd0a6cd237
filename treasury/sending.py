"""
Signing, sending and confirming treasury transfers to cold (EVM and TRON).

The payout rules hold here too, with the payout package's machinery: the fee policy and its
ceilings (withdrawals.payout.fees), the EVM nonce cursor per hot address (chains.services), the
adapters' shortfall check and simulation, the signer. A transfer's signed transaction is stored
(SIGNED, with its nonce) in the transaction that locks the transfer, before any node sees it;
every later run sends that same stored transaction, never a new one, so a crash at any line sends
at most one. Confirmed at the coin's confirmations: the network fee its receipt shows is booked to
the house account NETWORK_FEES in the same transaction (once per transaction hash).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from addresses import selectors as addresses_selectors
from addresses import signer
from addresses.models import AddressStatus, AddressType
from assets import house as assets_house
from assets.models import BusinessType, HouseAccount
from chains import registry as chains_registry
from chains import services as chains_services
from chains.base import ChainAdapter, ChainError, NonceUsed, SignedTx, TxRejected, TxStatus
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from monitoring import services as monitoring_services
from treasury import btc as treasury_btc
from treasury import services as treasury_services
from treasury.models import HotThreshold, TransferStatus, TreasuryTransfer
from utxos import selectors as utxos_selectors
from wallet_project.money import exact
from withdrawals import selectors as withdrawals_selectors
from withdrawals.payout import fees as payout_fees
from withdrawals.payout import reserve as payout_reserve
from withdrawals.payout.common import PayoutWaits

logger = logging.getLogger(__name__)

NONCE_CHAINS = ("ETH",)
SEND_CHAINS = ("BTC", "ETH", "TRON")
NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError)
WAITS_ALERT = "TREASURY_TRANSFER_WAITS"
TRON_EXPIRY_MARGIN_MS = 6_000

# Fault injection for the kill tests: called with "treasury.sign.locked" inside the signing
# transaction, "treasury.signed" after it committed, "treasury.sent" once a node took the
# transaction (before that is recorded), "treasury.confirmed" before settling. None in service.
fault_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


@dataclass(frozen=True)
class SendResult:
    chain_id: str
    signed: int = 0
    broadcast: int = 0
    confirmed: int = 0
    failed: int = 0
    waiting: int = 0


def _subject(transfer: TreasuryTransfer) -> str:
    return f"transfer {transfer.transfer_no}"


def treasury_send(*, chain_id: str, adapter: ChainAdapter | None = None, now: datetime | None = None) -> SendResult:
    """
    Send the chain's stored transfers again, then sign and send its approved ones, oldest first.

    A transfer that cannot be signed now waits approved with one TREASURY_TRANSFER_WAITS alert;
    one whose surplus is gone (the hot address paid withdrawals since) fails and is planned anew.
    """
    moment = now or timezone.now()
    if chain_id not in SEND_CHAINS:
        return SendResult(chain_id=chain_id)
    adapter = adapter or chains_registry.adapter_for(chain_id)
    signed = sent = failed = waiting = 0
    for transfer in TreasuryTransfer.objects.filter(chain_id=chain_id, status=TransferStatus.SIGNED).order_by("id"):
        sent += _broadcast(transfer=transfer, adapter=adapter, now=moment)
    terms: dict[str, int] | None = None
    for transfer_id in list(
        TreasuryTransfer.objects.filter(chain_id=chain_id, status=TransferStatus.APPROVED)
        .order_by("id")
        .values_list("id", flat=True)
    ):
        transfer = TreasuryTransfer.objects.get(id=transfer_id)
        try:
            if terms is None and chain_id in NONCE_CHAINS:
                terms = payout_fees.evm_terms(adapter.fee_market())  # type: ignore[attr-defined]
            outcome = _sign(transfer_id=transfer_id, adapter=adapter, terms=terms or {}, now=moment)
        except PayoutWaits as exc:
            waiting += 1
            monitoring_services.alert_raise_alone(
                kind=WAITS_ALERT, subject=_subject(transfer), message=f"{transfer.transfer_no}: {exc.message}"
            )
            continue
        except (*NODE_ERRORS, signer.SignerError) as exc:
            waiting += 1
            monitoring_services.alert_raise_alone(
                kind=WAITS_ALERT,
                subject=_subject(transfer),
                message=f"{transfer.transfer_no} not signed: {type(exc).__name__}: {str(exc)[:300]}",
            )
            continue
        if outcome is None:
            continue
        if outcome.status == TransferStatus.FAILED:
            failed += 1
            continue
        signed += 1
        _step("treasury.signed")
        sent += _broadcast(transfer=outcome, adapter=adapter, now=moment)
    return SendResult(chain_id=chain_id, signed=signed, broadcast=sent, failed=failed, waiting=waiting)


def _threshold_max(transfer: TreasuryTransfer) -> Decimal | None:
    return (
        HotThreshold.objects.filter(address__address=transfer.from_address, coin_id=transfer.coin_id)
        .values_list("max_balance", flat=True)
        .first()
    )


@transaction.atomic(durable=True)
def _sign(*, transfer_id: int, adapter: ChainAdapter, terms: dict[str, int], now: datetime) -> TreasuryTransfer | None:
    """Under the transfer's lock: check the surplus is still there, allocate the nonce, build, check, sign, store."""
    transfer = TreasuryTransfer.objects.select_for_update().get(id=transfer_id)
    _step("treasury.sign.locked")
    if transfer.status != TransferStatus.APPROVED:
        return None  # signed or decided by another run meanwhile
    coin = CoinConfig.objects.get(coin_id=transfer.coin_id)
    destination = addresses_selectors.address_find(chain_id=transfer.chain_id, address=transfer.to_address)
    if (
        destination is None
        or destination.address_type != AddressType.COLD
        or destination.status != AddressStatus.NORMAL
    ):
        # Approved for a cold address that ops disabled since (its key exposed, retired): never sent there.
        return _fail(
            transfer=transfer, reason=f"not signed: {transfer.to_address} is no enabled cold address now", now=now
        )
    if utxos_selectors.tracks(chain_id=coin.chain_id):
        return _sign_utxo(transfer=transfer, coin=coin, adapter=adapter, now=now)
    native = coins_selectors.coin_is_native(coin=coin)
    contract = None if native else coin.contract_address
    hot = transfer.from_address
    evm = coin.chain_id in NONCE_CHAINS
    # The node's count of mined transactions before its balance (payout.transfer.sign_transfer says why).
    mined_below = adapter.mined_count(hot) if evm else None  # type: ignore[attr-defined]
    held = adapter.balance(hot, contract=contract)
    reserved_native, reserved_token = payout_reserve.hot_reserved(coin=coin, from_address=hot, mined_below=mined_below)
    reserved_native += _treasury_reserved(transfer=transfer, mined_below=mined_below)
    maximum = _threshold_max(transfer)
    amount_units = coins_selectors.amount_to_base_units(coin=coin, amount=transfer.amount)
    max_units = coins_selectors.amount_to_base_units(coin=coin, amount=maximum) if maximum is not None else None
    free = held - (reserved_native if native else reserved_token) - _waiting_units(coin)
    if max_units is None or amount_units > free - max_units:
        keep = "no maximum any more" if max_units is None else "the surplus above the maximum is smaller now"
        return _fail(
            transfer=transfer,
            reason=f"not signed: {keep} (holds {held} base units, {free} free of unmined payouts)",
            now=now,
        )
    nonce = None
    if evm:
        if payout_reserve.hot_unsent(from_address=hot):
            raise PayoutWaits(f"hot address {hot} has a payout signed but not taken by the node yet", alert_kind=None)
        nonce = chains_services.nonce_allocate(
            chain_id=coin.chain_id,
            address=hot,
            node_next=adapter.next_nonce(hot),  # type: ignore[attr-defined]
        )
    chain_terms: dict[str, Any]
    if evm:
        chain_terms = {"nonce": nonce, "gas_margin": settings.ETH_GAS_LIMIT_MARGIN, **terms}
    else:
        chain_terms = {"expiration_ms": settings.WITHDRAW_TRON_EXPIRATION_SECONDS * 1000}
        if contract is not None:
            energy = adapter.estimate_energy(  # type: ignore[attr-defined]
                owner=hot, contract=contract, to_address=transfer.to_address, amount_base_units=amount_units
            )
            price = adapter.chain_parameters()["getEnergyFee"]  # type: ignore[attr-defined]
            chain_terms["fee_limit_sun"] = payout_fees.tron_fee_limit(
                energy=energy, energy_price=price, withdraw_no=transfer.transfer_no
            )
    unsigned = adapter.build_transfer(  # type: ignore[call-arg]
        from_address=hot,
        to_address=transfer.to_address,
        amount_base_units=amount_units,
        contract=contract,
        **chain_terms,
    )
    short = adapter.shortfall(unsigned, reserved_native=reserved_native, reserved_token=reserved_token)  # type: ignore[attr-defined]
    if short is not None:
        raise PayoutWaits(f"hot address short: {short}", alert_kind=WAITS_ALERT)
    if evm:
        failure = adapter.simulate(unsigned)  # type: ignore[attr-defined]
        if failure is not None:
            raise PayoutWaits(f"the node's simulation of the transfer fails ({failure})", alert_kind=WAITS_ALERT)
    signed = signer.signer_for(coin.chain_id)(unsigned)
    t = unsigned.terms
    terms = {
        "gas_limit": t.gas_limit,
        "max_fee_per_gas": t.max_fee_per_gas,
        "max_priority_fee_per_gas": t.max_priority_fee_per_gas,
        "gas_price": t.gas_price,
        "fee_limit": t.fee_limit,
    }
    return _signed_store(
        transfer=transfer, signed=signed, nonce=nonce, terms={k: v for k, v in terms.items() if v is not None}, now=now
    )


def _sign_utxo(
    *, transfer: TreasuryTransfer, coin: CoinConfig, adapter: ChainAdapter, now: datetime
) -> TreasuryTransfer:
    """BTC: the surplus checked on the UTXO set, then outputs selected, locked, signed (treasury.btc)."""
    maximum = _threshold_max(transfer)
    max_units = coins_selectors.amount_to_base_units(coin=coin, amount=maximum) if maximum is not None else None
    held, surplus = treasury_btc.surplus_sats(transfer=transfer, coin=coin, max_units=max_units)
    surplus -= _waiting_units(coin)
    if max_units is None or coins_selectors.amount_to_base_units(coin=coin, amount=transfer.amount) > surplus:
        keep = "no maximum any more" if max_units is None else "the surplus above the maximum is smaller now"
        return _fail(transfer=transfer, reason=f"not signed: {keep} (holds {held} sat)", now=now)
    signed, terms = treasury_btc.sign_transfer(transfer=transfer, coin=coin, adapter=adapter, now=now)
    return _signed_store(transfer=transfer, signed=signed, nonce=None, terms=terms, now=now)


def _signed_store(
    *, transfer: TreasuryTransfer, signed: SignedTx, nonce: int | None, terms: dict[str, int], now: datetime
) -> TreasuryTransfer:
    """Store the signed transaction on the locked transfer (SIGNED): before any node sees it."""
    source = transfer.status
    transfer.fee_terms = terms
    transfer.status, transfer.tx_hash, transfer.raw, transfer.nonce = (
        TransferStatus.SIGNED,
        signed.tx_hash,
        signed.raw,
        nonce,
    )
    transfer.signed_at = now
    transfer.save(update_fields=["status", "tx_hash", "raw", "nonce", "fee_terms", "signed_at", "update_time"])
    remark = f"tx {signed.tx_hash}" + (f", nonce {nonce}" if nonce is not None else "")
    treasury_services.transfer_log(transfer=transfer, action="sign", from_status=source, remark=remark, now=now)
    monitoring_services.alert_resolve(kind=WAITS_ALERT, subject=_subject(transfer), how="signed", now=now)
    return transfer


def _waiting_units(coin: CoinConfig) -> int:
    """What the coin's approved withdrawals not in a payout yet will need from the hot addresses (base units)."""
    waiting = withdrawals_selectors.approved_unpaid_total(coin_id=coin.coin_id)
    return coins_selectors.amount_to_base_units(coin=coin, amount=waiting) if waiting else 0


def _treasury_reserved(*, transfer: TreasuryTransfer, mined_below: int | None) -> int:
    """What the hot address's other treasury transfers of the chain's own coin promise, not in a block yet."""
    native = coins_selectors.chain_native_coin(chain_id=transfer.chain_id)
    others = TreasuryTransfer.objects.filter(
        from_address=transfer.from_address,
        coin_id=native.coin_id,
        status__in=(TransferStatus.SIGNED, TransferStatus.BROADCAST),
    ).exclude(id=transfer.id)
    if mined_below is not None:
        others = others.filter(nonce__gte=mined_below)
    else:
        others = others.filter(block_number__isnull=True)
    return sum(
        coins_selectors.amount_to_base_units(coin=native, amount=a) for a in others.values_list("amount", flat=True)
    )


def _fail(*, transfer: TreasuryTransfer, reason: str, now: datetime) -> TreasuryTransfer:
    """End a locked transfer FAILED (nothing of it is on chain, or it reverted), with one critical alert."""
    source = transfer.status
    transfer.status, transfer.reason, transfer.open_key, transfer.finished_at = (
        TransferStatus.FAILED,
        reason[:500],
        None,
        now,
    )
    transfer.save(update_fields=["status", "reason", "open_key", "finished_at", "update_time"])
    treasury_services.transfer_log(transfer=transfer, action="fail", from_status=source, remark=reason, now=now)
    monitoring_services.alert_raise(
        kind="TREASURY_TRANSFER_FAILED",
        subject=_subject(transfer),
        message=f"{transfer.amount.normalize():f} {transfer.coin_id} from {transfer.from_address} to cold "
        f"{transfer.to_address}: {reason}",
        now=now,
    )
    monitoring_services.alert_resolve(kind=WAITS_ALERT, subject=_subject(transfer), how="failed", now=now)
    return transfer


def _broadcast(*, transfer: TreasuryTransfer, adapter: ChainAdapter, now: datetime) -> int:
    """Send the stored transaction (again); 1 if the node has it now."""
    try:
        adapter.broadcast_irreversible(SignedTx(tx_hash=transfer.tx_hash or "", raw=transfer.raw))
    except NonceUsed:
        return 0  # a mined transaction used its nonce: treasury_confirm finds out whether it was this one
    except (TxRejected, *NODE_ERRORS) as exc:
        monitoring_services.alert_raise_alone(
            kind=WAITS_ALERT,
            subject=_subject(transfer),
            message=f"{transfer.transfer_no} not sent: {type(exc).__name__}: {str(exc)[:300]}",
        )
        return 0
    _step("treasury.sent")
    with transaction.atomic(durable=True):
        locked = TreasuryTransfer.objects.select_for_update().get(id=transfer.id)
        if locked.status == TransferStatus.SIGNED:
            locked.status, locked.broadcast_at = TransferStatus.BROADCAST, now
            locked.save(update_fields=["status", "broadcast_at", "update_time"])
            treasury_services.transfer_log(
                transfer=locked, action="broadcast", from_status=TransferStatus.SIGNED, remark="", now=now
            )
        monitoring_services.alert_resolve(kind=WAITS_ALERT, subject=_subject(transfer), how="sent", now=now)
    return 1


def treasury_confirm(*, chain_id: str, adapter: ChainAdapter | None = None, now: datetime | None = None) -> SendResult:
    """
    Follow the chain's signed and sent transfers: settle those mined at the coin's confirmations
    (CONFIRMED, or FAILED if it reverted or moved no token), send again those the node lost, and
    fail a TRON one that provably expired unmined.
    """
    moment = now or timezone.now()
    if chain_id not in SEND_CHAINS:
        return SendResult(chain_id=chain_id)
    adapter = adapter or chains_registry.adapter_for(chain_id)
    tip = adapter.tip_height()
    confirmed = failed = sent = 0
    live = TreasuryTransfer.objects.filter(
        chain_id=chain_id, status__in=(TransferStatus.SIGNED, TransferStatus.BROADCAST)
    ).select_related("coin")
    for transfer in live.order_by("id"):
        # The sender's mined count before the transaction's status: read the other way round, a
        # transaction mined between the two reads would look unmined with its nonce used.
        evm = chain_id in NONCE_CHAINS
        mined = adapter.mined_count(transfer.from_address) if evm else None  # type: ignore[attr-defined]
        status = adapter.tx_status(transfer.tx_hash or "")
        if status.block_number is None:
            if (
                not status.found
                and chain_id == "TRON"
                and adapter.never_included(  # type: ignore[attr-defined]
                    SignedTx(tx_hash=transfer.tx_hash or "", raw=transfer.raw), margin_ms=TRON_EXPIRY_MARGIN_MS
                )
            ):
                _fail_alone(
                    transfer_id=transfer.id,
                    reason="expired unmined: the signed transaction can never be included",
                    now=moment,
                )
                failed += 1
            elif not status.found and mined is not None and transfer.nonce is not None and transfer.nonce < mined:
                # Another transaction of the hot address took its nonce: this one can never be mined.
                _fail_alone(
                    transfer_id=transfer.id,
                    reason=f"nonce {transfer.nonce} was used by a transaction this transfer did not sign: check the "
                    "hot address's history (does something else sign with its key?)",
                    now=moment,
                )
                failed += 1
            elif not status.found:
                sent += _broadcast(transfer=transfer, adapter=adapter, now=moment)
            continue
        if tip - status.block_number + 1 < transfer.coin.required_confirmations:
            continue
        _step("treasury.confirmed")
        outcome = _settle(transfer_id=transfer.id, status=status, adapter=adapter, now=moment)
        if outcome == TransferStatus.CONFIRMED:
            confirmed += 1
        elif outcome == TransferStatus.FAILED:
            failed += 1
    return SendResult(chain_id=chain_id, broadcast=sent, confirmed=confirmed, failed=failed)


@transaction.atomic(durable=True)
def _fail_alone(*, transfer_id: int, reason: str, now: datetime) -> None:
    transfer = TreasuryTransfer.objects.select_for_update().get(id=transfer_id)
    if transfer.status in (TransferStatus.SIGNED, TransferStatus.BROADCAST):
        _fail(transfer=transfer, reason=reason, now=now)


def _moved_token(*, transfer: TreasuryTransfer, status: TxStatus, adapter: ChainAdapter, units: int) -> bool:
    contract = adapter.match_key(transfer.coin.contract_address or "")
    return any(
        t.contract == contract
        and t.from_address == adapter.match_key(transfer.from_address)
        and t.to_address == adapter.match_key(transfer.to_address)
        and t.amount_base_units == units
        for t in status.transfers
    )


@transaction.atomic(durable=True)
def _settle(*, transfer_id: int, status: TxStatus, adapter: ChainAdapter, now: datetime) -> str | None:
    transfer = TreasuryTransfer.objects.select_for_update().select_related("coin").get(id=transfer_id)
    if transfer.status not in (TransferStatus.SIGNED, TransferStatus.BROADCAST):
        return None  # settled by another run
    coin = transfer.coin
    native = coins_selectors.chain_native_coin(chain_id=transfer.chain_id)
    transfer.block_number = status.block_number
    # BTC: the fee is what the stored transaction leaves to the miners (inputs - outputs), known at signing.
    fee_units = status.fee if status.fee is not None else transfer.fee_terms.get("fee_sats")
    if fee_units:
        transfer.fee = coins_selectors.amount_from_base_units(coin=native, base_units=fee_units)
        with exact():
            paid = -transfer.fee
        # The network fee is the exchange's expense; the moved amount stays the exchange's (cold is ours).
        assets_house.house_book(
            coin=native,
            account=HouseAccount.NETWORK_FEES,
            amount=paid,
            business_type=BusinessType.HOUSE_NETWORK_FEE,
            biz_ref=(transfer.tx_hash or "").removeprefix("0x")[:64],
            ref_tx_hash=transfer.tx_hash or "",
            memo=f"treasury transfer {transfer.transfer_no} to cold",
        )
    units = coins_selectors.amount_to_base_units(coin=coin, amount=transfer.amount)
    token_ok = coins_selectors.coin_is_native(coin=coin) or _moved_token(
        transfer=transfer, status=status, adapter=adapter, units=units
    )
    transfer.save(update_fields=["block_number", "fee", "update_time"])
    if not status.success or not token_ok:
        why = "reverted on chain" if not status.success else "mined without the token's Transfer to cold"
        _fail(transfer=transfer, reason=f"{why} in block {status.block_number}", now=now)
        return TransferStatus.FAILED
    source = transfer.status
    transfer.status, transfer.open_key, transfer.finished_at = TransferStatus.CONFIRMED, None, now
    transfer.save(update_fields=["status", "open_key", "finished_at", "update_time"])
    treasury_services.transfer_log(
        transfer=transfer, action="confirm", from_status=source, remark=f"block {status.block_number}", now=now
    )
    return TransferStatus.CONFIRMED
