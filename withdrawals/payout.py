"""
On-chain payment of approved withdrawals: sign, store, broadcast, confirm.

`withdrawals_pay` signs each approved withdrawal to an outside address in a transaction that
locks it, picks a hot address, allocates that address's nonce (EVM) and stores the signed
transaction with status PROCESSING; the broadcast comes after the commit, and every retry sends
that same stored transaction. `withdrawals_confirm` follows the PROCESSING ones to completion
(WITHDRAW_SETTLE) or failure (WITHDRAW_UNFREEZE) at the coin's confirmations on a canonical block.
Apply and audit live in services.py; the withdrawal row's shared steps in records.py.

A withdrawal that cannot be signed now (its user held by a reorg, its coin switched off, the hot
address short of it) waits approved, with one alert where a person must act, and the run goes on
to the next one; a node that is down, or a chain without a usable hot address, stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from addresses import services as addresses_services
from addresses import signer
from assets import services as assets_services
from assets.models import BusinessType
from chains import registry as chains_registry
from chains import services as chains_services
from chains.base import ChainAdapter, ChainError, Shortfall, SignedTx, TxRejected
from coins import selectors as coins_selectors
from coins.models import CoinConfig, Switch
from monitoring import services as monitoring_services
from monitoring.models import Severity
from recharges import selectors as recharges_selectors
from wallet_project.errors import WalletError
from withdrawals import records
from withdrawals import risk_rules as withdrawals_risk
from withdrawals.models import WithdrawRecord, WithdrawStatus
from withdrawals.services import WithdrawalRefused

logger = logging.getLogger(__name__)


# Chains whose approved withdrawals withdrawals_pay can send; the others (BTC) wait, approved.
ONCHAIN_CHAINS = ("ETH", "TRON")
# EVM senders number their transactions: a stored one the node has not taken holds its nonce.
NONCE_CHAINS = ("ETH",)
# A node's clock may run a little ahead of the producers'; no block this much past expiry includes it.
TRON_EXPIRY_MARGIN_MS = 6_000
NODE_ERRORS: tuple[type[Exception], ...] = (ChainError, OSError, ValueError)
# At signing these stop the chain's run: the node is down, or the chain has no hot address that can
# sign; the next withdrawal would fail the same way. Any other refusal concerns one withdrawal.
CHAIN_STOPS: tuple[type[Exception], ...] = (
    ChainError,
    OSError,
    addresses_services.NoHotWallet,
    signer.SignerError,
)

# Fault injection: tests set this to a callable that raises (or waits) when the named step is
# reached: "sign.locked" inside the signing transaction with the row locked, "pay.signed" after it
# committed. It proves that a crash or a concurrent writer there pays once. Always None in a
# running service.
fault_hook: Callable[[str], None] | None = None


def _step(name: str) -> None:
    if fault_hook is not None:
        fault_hook(name)


class PayoutWaits(WalletError):
    """
    This withdrawal cannot be signed now: it stays as it is and the run goes on to the next one.

    alert_kind names the alert raised for it (one per withdrawal: alerts deduplicate by kind and
    subject), or is None where no person needs to act (a coin switched off by ops).
    """

    code = "payout_waits"

    def __init__(self, message: str, *, alert_kind: str | None) -> None:
        super().__init__(message)
        self.alert_kind = alert_kind


@dataclass(frozen=True)
class PayoutResult:
    chain_id: str
    signed: int = 0
    broadcast: int = 0
    completed: int = 0
    failed: int = 0
    waiting: int = 0
    error: str | None = None  # why the run stopped early (node down, no hot address); None if it went through
    waits: tuple[str, ...] = ()  # why each withdrawal left unsigned by withdrawals_pay waits


def withdrawals_pay(*, chain_id: str, now: datetime | None = None, adapter: ChainAdapter | None = None) -> PayoutResult:
    """
    Sign and broadcast the chain's approved withdrawals to outside addresses, oldest first.

    Each is signed in a transaction that locks it, picks a hot address of WITHDRAW_HOT_WALLET_TYPE,
    allocates that address's nonce and stores the signed transaction with status PROCESSING; the
    broadcast comes after the commit. A crash in between leaves a stored transaction that
    withdrawals_confirm broadcasts again: the same transaction, never a second payment.
    """
    moment = now or timezone.now()
    if chain_id not in ONCHAIN_CHAINS:
        return PayoutResult(chain_id=chain_id, error=f"on-chain withdrawals of {chain_id} are not built yet")
    adapter = adapter or chains_registry.adapter_for(chain_id)
    signed = broadcast = 0
    # Transactions signed but not taken by the node yet go first: they hold their address's nonce.
    for record in (
        WithdrawRecord.objects.filter(
            status=WithdrawStatus.PROCESSING, coin__chain_id=chain_id, broadcast_time__isnull=True
        )
        .select_related("coin")
        .order_by("id")
    ):
        broadcast += _broadcast(record=record, adapter=adapter, now=moment)
    waits: list[str] = []
    gas_price: int | None = None
    # Nothing stored for one that fails below: it stays approved and is tried again next run, after
    # the others (a nonce it allocated rolled back with it, so a later withdrawal may take it).
    for withdraw_id, withdraw_no in _approved(chain_id=chain_id):
        if signed >= settings.WITHDRAW_PAY_BATCH:
            break
        try:
            if gas_price is None and chain_id in NONCE_CHAINS:
                # Read once, before any lock: a slow node then delays no auditor and no other signer.
                gas_price = adapter.fee_estimate()
            record = _sign(withdraw_id=withdraw_id, adapter=adapter, gas_price=gas_price, now=moment)
        except PayoutWaits as exc:
            waits.append(exc.message)
            _waiting(exc=exc, withdraw_no=withdraw_no)
            continue
        except CHAIN_STOPS as exc:
            text = f"signing withdrawal {withdraw_no} failed: {type(exc).__name__}: {str(exc)[:400]}"
            kind = "WITHDRAW_SIGN_FAILED" if isinstance(exc, WalletError) else "NODE_DOWN"
            _alert(severity=Severity.WARNING, kind=kind, subject=f"chain {chain_id}", text=text)
            return PayoutResult(
                chain_id=chain_id,
                signed=signed,
                broadcast=broadcast,
                waiting=len(waits),
                error=text,
                waits=tuple(waits),
            )
        except (WalletError, ValueError) as exc:
            # Something about this withdrawal (its coin's set-up, its address): the next one may be fine.
            text = f"signing withdrawal {withdraw_no} failed: {type(exc).__name__}: {str(exc)[:400]}"
            waits.append(text)
            subject = f"withdrawal {withdraw_no}"
            _alert(severity=Severity.WARNING, kind="WITHDRAW_SIGN_FAILED", subject=subject, text=text)
            continue
        if record is None:
            continue  # taken or decided meanwhile
        signed += 1
        _step("pay.signed")
        broadcast += _broadcast(record=record, adapter=adapter, now=moment)
    return PayoutResult(chain_id=chain_id, signed=signed, broadcast=broadcast, waiting=len(waits), waits=tuple(waits))


def _approved(*, chain_id: str) -> Iterator[tuple[int, str]]:
    """(id, withdraw_no) of the chain's approved withdrawals to outside addresses, oldest first, by pages.

    Every one is reached however many older ones wait: those can never hold back the rest.
    """
    last_id = 0
    while True:
        page = list(
            WithdrawRecord.objects.filter(
                status=WithdrawStatus.APPROVED, to_user__isnull=True, coin__chain_id=chain_id, id__gt=last_id
            )
            .order_by("id")
            .values_list("id", "withdraw_no")[: settings.WITHDRAW_PAY_BATCH]
        )
        yield from page
        if len(page) < settings.WITHDRAW_PAY_BATCH:
            return
        last_id = page[-1][0]


def _waiting(*, exc: PayoutWaits, withdraw_no: str) -> None:
    if exc.alert_kind is None:
        logger.info("%s", exc.message)
    else:
        _alert(severity=Severity.WARNING, kind=exc.alert_kind, subject=f"withdrawal {withdraw_no}", text=exc.message)


@transaction.atomic(durable=True)
def _sign(*, withdraw_id: int, adapter: ChainAdapter, gas_price: int | None, now: datetime) -> WithdrawRecord | None:
    record = records.withdrawal_lock(withdraw_id)
    _step("sign.locked")
    if record.status != WithdrawStatus.APPROVED or record.to_user_id is not None:
        return None
    _payable_check(record=record)
    _sign_transfer(record=record, adapter=adapter, gas_price=gas_price, action="sign")
    records.withdrawal_event(record=record, now=now)
    return record


def _payable_check(*, record: WithdrawRecord) -> None:
    """
    Refuse to sign a locked withdrawal while its coin is switched off or its user's withdrawals are held.

    Apply and approval checked the same, but a reorg hold or a switch may have come since.
    :raises PayoutWaits: it waits, approved (or with its expired TRON transaction) until then.
    """
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    if coin.withdraw_enabled != Switch.ENABLED or not coin.is_enabled:
        raise PayoutWaits(
            f"withdrawal {record.withdraw_no} waits unsigned: withdrawals of {coin.coin_id} are switched off",
            alert_kind=None,
        )
    if recharges_selectors.withdrawals_held(user_id=record.user_id):
        raise PayoutWaits(
            f"withdrawal {record.withdraw_no} of user {record.user_id} waits unsigned: the user's withdrawals are "
            "held (reorg hold: a credited deposit was orphaned and could not be taken back); it is paid once ops "
            "settle the shortfall and lift the hold",
            alert_kind="WITHDRAW_HELD",
        )
    if (stop := withdrawals_risk.signing_stop(record=record, coin=coin, now=timezone.now())) is not None:
        raise PayoutWaits(stop.message, alert_kind=stop.alert_kind)  # a tripped breaker, a refusing risk rule


def _sign_transfer(*, record: WithdrawRecord, adapter: ChainAdapter, gas_price: int | None, action: str) -> None:
    """Pick the hot address, build, check, sign and store the transfer of a locked withdrawal (PROCESSING)."""
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    native = coins_selectors.coin_is_native(coin=coin)
    if not native and not coin.contract_address:
        # A token without its contract would be paid in the chain's own coin.
        raise WithdrawalRefused(f"{coin.coin_id} has no contract address configured: ops must set it.")
    # Any enabled hot address of the pool: its recorded balance is not kept per token; what it
    # holds on chain is checked below (shortfall) before anything is signed.
    hot = addresses_services.hot_wallet_select(
        chain_id=coin.chain_id, wallet_type=settings.WITHDRAW_HOT_WALLET_TYPE, amount=Decimal(0)
    )
    amount = coins_selectors.amount_to_base_units(coin=coin, amount=record.actual_amount)
    contract = None if native else coin.contract_address
    nonce = None
    if coin.chain_id in NONCE_CHAINS:
        if WithdrawRecord.objects.filter(
            status=WithdrawStatus.PROCESSING, from_address=hot.address, broadcast_time__isnull=True
        ).exists():
            # A transaction of this address the node has not taken holds its nonce: later ones would
            # queue behind it unmined. It is sent again first (withdrawals_pay, withdrawals_confirm),
            # and alerted there if the node refuses it.
            raise PayoutWaits(
                f"withdrawal {record.withdraw_no} waits unsigned: hot address {hot.address} has a signed "
                "transaction the node has not taken yet",
                alert_kind=None,
            )
        nonce = chains_services.nonce_allocate(
            chain_id=coin.chain_id, address=hot.address, node_next=adapter.next_nonce(hot.address)
        )
        chain_terms: dict[str, object] = {"nonce": nonce, "gas_price": gas_price}
    else:  # TRON: no nonce; the transaction expires instead (see withdrawals_confirm)
        chain_terms = {"expiration_ms": settings.WITHDRAW_TRON_EXPIRATION_SECONDS * 1000}
    unsigned = adapter.build_transfer(
        from_address=hot.address,
        to_address=record.to_address,
        amount_base_units=amount,
        contract=contract,
        **chain_terms,
    )
    # Read before the balance (in shortfall): a block mined between the two reads then makes the
    # reserve err high (a payout counted though the balance already shows it), never low.
    mined_below = adapter.mined_count(hot.address) if coin.chain_id in NONCE_CHAINS else None
    reserved_native, reserved_token = _unmined_payouts(
        record=record, coin=coin, from_address=hot.address, mined_below=mined_below
    )
    short = adapter.shortfall(unsigned, reserved_native=reserved_native, reserved_token=reserved_token)
    if short is not None:
        # Rolled back with the nonce: nothing is signed that the node would refuse or that would revert.
        text = _shortfall_text(record=record, coin=coin, short=short)
        raise PayoutWaits(text, alert_kind="WITHDRAW_HOT_WALLET_SHORT")
    signed = signer.signer_for(coin.chain_id)(unsigned)
    previous = record.tx_hash
    record.from_address, record.nonce, record.signed_tx, record.tx_hash = hot.address, nonce, signed.raw, signed.tx_hash
    record.broadcast_time = record.block_number = None  # a new transaction, in no block yet
    remark = f"from {hot.address}" + (f", nonce {nonce}" if nonce is not None else "")
    if previous:
        remark += f", replacing expired {previous}"
    records.withdrawal_transition(
        record=record, auditor_id=None, action=action, to_status=WithdrawStatus.PROCESSING, remark=remark
    )


def _broadcast(*, record: WithdrawRecord, adapter: ChainAdapter, now: datetime) -> int:
    """Send the stored transaction (again); 1 if the node has it now, 0 after alerting why not."""
    try:
        adapter.broadcast_irreversible(SignedTx(tx_hash=record.tx_hash or "", raw=record.signed_tx or ""))
    except TxRejected as exc:
        # Kept as it is: a payment the hot address cannot cover yet is sent again next time.
        _alert(
            severity=Severity.CRITICAL,
            kind="WITHDRAW_BROADCAST_REJECTED",
            subject=f"withdrawal {record.withdraw_no}",
            text=f"the node refused withdrawal {record.withdraw_no} from {record.from_address}: {str(exc)[:200]}",
        )
        return 0
    except NODE_ERRORS as exc:
        _alert(
            severity=Severity.WARNING,
            kind="NODE_DOWN",
            subject=f"chain {record.coin.chain_id}",
            text=f"broadcast of withdrawal {record.withdraw_no} failed: {type(exc).__name__}",
        )
        return 0
    WithdrawRecord.objects.filter(id=record.id, broadcast_time__isnull=True).update(broadcast_time=now)
    return 1


def withdrawals_confirm(
    *, chain_id: str, now: datetime | None = None, adapter: ChainAdapter | None = None
) -> PayoutResult:
    """
    Follow the chain's withdrawals in PROCESSING: complete the mined ones, fail the reverted ones.

    At the coin's confirmations, on a block the node still has: a success pays the frozen amount
    out (WITHDRAW_SETTLE), a revert unfreezes it (WITHDRAW_UNFREEZE; the hot address paid the
    gas). A transaction the node does not know is broadcast again, and alerted as stuck after
    WITHDRAW_STUCK_SECONDS.
    """
    moment = now or timezone.now()
    if chain_id not in ONCHAIN_CHAINS:
        return PayoutResult(chain_id=chain_id)
    adapter = adapter or chains_registry.adapter_for(chain_id)
    completed = failed = waiting = 0
    try:
        tip = adapter.tip_height()
        records = (
            WithdrawRecord.objects.filter(status=WithdrawStatus.PROCESSING, coin__chain_id=chain_id)
            .select_related("coin")
            .order_by("id")
        )
        for record in records.iterator(chunk_size=200):
            status = adapter.tx_status(record.tx_hash or "")
            _mined_at(record=record, block_number=status.block_number if status.found else None)
            if not status.found and chain_id not in NONCE_CHAINS and _never_included(record=record, adapter=adapter):
                # It can never be included now: a new transaction pays this withdrawal instead.
                try:
                    resigned = _resign(withdraw_id=record.id, tx_hash=record.tx_hash or "", adapter=adapter, now=moment)
                except PayoutWaits as exc:  # held, switched off or the hot wallet short: the next run tries again
                    _waiting(exc=exc, withdraw_no=record.withdraw_no)
                    resigned = None
                except WalletError as exc:  # e.g. no hot address: the next run tries again
                    _alert(
                        severity=Severity.WARNING,
                        kind="WITHDRAW_SIGN_FAILED",
                        subject=f"withdrawal {record.withdraw_no}",
                        text=f"signing withdrawal {record.withdraw_no} again failed: {str(exc)[:200]}",
                    )
                    resigned = None
                if resigned is not None:
                    _broadcast(record=resigned, adapter=adapter, now=moment)
                waiting += 1
                continue
            if not status.found or status.block_number is None:
                if not status.found:
                    _broadcast(record=record, adapter=adapter, now=moment)
                # Unmined, whether the node holds it (fee too low, queued behind a gap) or not.
                started = record.broadcast_time or record.update_time
                if (moment - started).total_seconds() > settings.WITHDRAW_STUCK_SECONDS:
                    _alert(
                        severity=Severity.CRITICAL,
                        kind="WITHDRAW_STUCK",
                        subject=f"withdrawal {record.withdraw_no}",
                        text=f"withdrawal {record.withdraw_no} is not mined after {settings.WITHDRAW_STUCK_SECONDS} s",
                    )
                waiting += 1
                continue
            confirmations = tip - status.block_number + 1
            if confirmations < record.required_confirmations or adapter.block_hash(status.block_number) != (
                status.block_hash
            ):
                waiting += 1
                continue
            settle = _complete if status.success else _fail
            settle(withdraw_id=record.id, block_number=status.block_number, confirmations=confirmations, now=moment)
            completed += bool(status.success)
            failed += not status.success
    except NODE_ERRORS as exc:
        text = f"confirming withdrawals failed: {type(exc).__name__}: {str(exc)[:200]}"
        _alert(severity=Severity.WARNING, kind="NODE_DOWN", subject=f"chain {chain_id}", text=text)
        return PayoutResult(chain_id=chain_id, completed=completed, failed=failed, waiting=waiting, error=text)
    return PayoutResult(chain_id=chain_id, completed=completed, failed=failed, waiting=waiting)


def _mined_at(*, record: WithdrawRecord, block_number: int | None) -> None:
    """
    Keep the block the node shows a payout in (None: in no block), read by _unmined_payouts on TRON.

    One conditional statement, without the row lock: it changes nothing once the withdrawal was
    settled or signed again meanwhile. A reorg that takes the payout out of its block clears it.
    """
    if record.block_number != block_number:
        WithdrawRecord.objects.filter(id=record.id, status=WithdrawStatus.PROCESSING, tx_hash=record.tx_hash).update(
            block_number=block_number
        )


def _unmined_payouts(
    *, record: WithdrawRecord, coin: CoinConfig, from_address: str, mined_below: int | None = None
) -> tuple[int, int]:
    """
    What the address's other payouts not in a block yet promise: (native base units, this token's).

    The node's balance (at its latest block) already excludes a payout in a block, so only the
    others count: signed but not sent, or sent and not mined. On EVM the node says which exactly:
    mined_below, its count of the address's transactions in the latest block (a payout with a
    nonce below it is in a block), read with the balance, so a reorg that took a payout out of its
    block is seen at once. Elsewhere a payout counts while withdrawals_confirm last saw it in no
    block: one mined since still counts until that run (the reserve errs high, never low).
    """
    native_id = coins_selectors.chain_native_coin(chain_id=coin.chain_id).coin_id
    if mined_below is not None:
        unmined = Q(nonce__gte=mined_below)
    else:
        unmined = Q(block_number__isnull=True)
    rows = (
        WithdrawRecord.objects.filter(status=WithdrawStatus.PROCESSING, from_address=from_address)
        .filter(unmined)
        .exclude(id=record.id)
        .filter(coin_id__in={native_id, coin.coin_id})
        .values_list("coin_id", "actual_amount")
    )
    coins = {c.coin_id: c for c in CoinConfig.objects.filter(coin_id__in={native_id, coin.coin_id})}
    native = token = 0
    for coin_id, amount in rows:
        units = coins_selectors.amount_to_base_units(coin=coins[coin_id], amount=amount)
        if coin_id == native_id:
            native += units
        else:
            token += units
    return native, token


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


def _never_included(*, record: WithdrawRecord, adapter: ChainAdapter) -> bool:
    """Whether the stored TRON transaction is in no solid block and, past its expiry, never will be."""
    signed = SignedTx(tx_hash=record.tx_hash or "", raw=record.signed_tx or "")
    try:
        return adapter.never_included(signed, margin_ms=TRON_EXPIRY_MARGIN_MS)
    except (KeyError, TypeError, ValueError):
        return False


@transaction.atomic(durable=True)
def _resign(*, withdraw_id: int, tx_hash: str, adapter: ChainAdapter, now: datetime) -> WithdrawRecord | None:
    """Replace an expired, never-mined TRON transaction of a locked withdrawal with a new one."""
    record = records.withdrawal_lock(withdraw_id)
    if record.status != WithdrawStatus.PROCESSING or record.tx_hash != tx_hash:
        return None  # settled, or replaced by another worker meanwhile
    _payable_check(record=record)
    if not _never_included(record=record, adapter=adapter):
        return None  # undecided after all: it is followed as usual
    _sign_transfer(record=record, adapter=adapter, gas_price=None, action="resign")
    return record


@transaction.atomic(durable=True)
def _complete(*, withdraw_id: int, block_number: int, confirmations: int, now: datetime) -> None:
    record = records.withdrawal_lock(withdraw_id)
    if record.status != WithdrawStatus.PROCESSING:
        return
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    assets_services.balance_settle_frozen(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_SETTLE,
        biz_ref=record.withdraw_no,
        ref_tx_hash=record.tx_hash or "",
        memo=f"withdrawal {record.withdraw_no}",
    )
    record.block_number, record.confirmations, record.complete_time = block_number, confirmations, now
    records.withdrawal_transition(
        record=record, auditor_id=None, action="confirm", to_status=WithdrawStatus.COMPLETED, remark=""
    )
    records.withdrawal_event(record=record, now=now)


@transaction.atomic(durable=True)
def _fail(*, withdraw_id: int, block_number: int, confirmations: int, now: datetime) -> None:
    record = records.withdrawal_lock(withdraw_id)
    if record.status != WithdrawStatus.PROCESSING:
        return
    coin = CoinConfig.objects.get(coin_id=record.coin_id)
    assets_services.balance_unfreeze(
        user_id=record.user_id,
        coin=coin,
        amount=record.amount,
        business_type=BusinessType.WITHDRAW_UNFREEZE,
        biz_ref=record.withdraw_no,
        ref_tx_hash=record.tx_hash or "",
        memo=f"withdrawal {record.withdraw_no} reverted on chain",
    )
    record.block_number, record.confirmations = block_number, confirmations
    records.withdrawal_transition(
        record=record, auditor_id=None, action="fail", to_status=WithdrawStatus.FAILED, remark="reverted on chain"
    )
    records.withdrawal_event(record=record, now=now)
    monitoring_services.alert_raise(
        severity=Severity.WARNING,
        kind="WITHDRAW_FAILED",
        subject=f"withdrawal {record.withdraw_no}",
        message=f"withdrawal {record.withdraw_no} reverted on chain; its amount is unfrozen",
        now=now,
    )


def _alert(*, severity: Severity, kind: str, subject: str, text: str) -> None:
    logger.warning("%s %s: %s", kind, subject, text)
    monitoring_services.alert_raise_alone(severity=severity, kind=kind, subject=subject, message=text)
