"""
BTC payouts: approved withdrawals paid in batches from the withdraw pool's UTXOs, a stuck payout
bumped by child-pays-for-parent.

Signing a batch is one transaction: lock the withdrawals (id order), check each is still payable,
select and lock hot-pool UTXOs (utxos_select_lock: two payers never pick one output), take a fresh
change address, build one transaction with an output per withdrawal (output_index = its place),
sign it through the signer, store payout + links (each with its fair share of the fee) + the
signed transaction, and record the pending spend; the broadcast comes after the commit, like EVM.
Confirmation, re-broadcast until mined and settlement are the shared steps of confirmation.py.

A payout unmined past WITHDRAW_STUCK_SECONDS gets one CPFP child: a transaction spending the
payout's change output to a fresh change address, with a fee that lifts the package (parent +
child) to the rate a payout would pay now (at least the parent's x BTC_CPFP_FEE_MULTIPLIER). It is
a `cpfp_child` payout_tx of the same payout: the parent still settles the withdrawals.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models.functions import Coalesce

from addresses import selectors as addresses_selectors
from addresses import services as addresses_services
from addresses import signer
from chains.base import ChainAdapter, SignedTx, UnsignedTx
from chains.btc import BtcAdapter, Utxo, p2wpkh_vsize, raw_outputs
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from monitoring.models import Severity
from recharges import selectors as recharges_selectors
from utxos import services as utxos_services
from wallet_project.errors import WalletError
from withdrawals import records
from withdrawals.models import (
    Payout,
    PayoutStatus,
    PayoutTx,
    PayoutTxKind,
    PayoutTxStatus,
    PayoutWithdrawal,
    WithdrawRecord,
    WithdrawStatus,
)
from withdrawals.payout import fees
from withdrawals.payout.broadcast import broadcast
from withdrawals.payout.common import (
    CHAIN_STOPS,
    LIVE_TX,
    NODE_ERRORS,
    PayoutWaits,
    alert,
    label,
    payable_check,
    payout_lock,
    payout_tx_store,
    step,
    waiting,
)

# Chains paid from the exchange's UTXO set.
UTXO_CHAINS = ("BTC",)


@dataclass
class BtcRun:
    signed: int = 0
    sent: int = 0
    waits: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class Signed:
    tx_id: int | None  # the payout's first transaction; None when no withdrawal of the batch was payable
    waited: list[tuple[str, PayoutWaits]]  # (withdraw_no, why) of those left approved


def utxo_ref(withdraw_no: str) -> str:
    """The UTXO lock reference of the payout whose first output pays withdraw_no (one payout per withdrawal)."""
    return f"payout:{withdraw_no}"


def _approved(*, chain_id: str, skip: set[int]):
    return (
        WithdrawRecord.objects.filter(status=WithdrawStatus.APPROVED, to_user__isnull=True, coin__chain_id=chain_id)
        .exclude(id__in=skip)
        .annotate(approved_at=Coalesce("audit_time", "create_time"))
    )


def _ready_batch(*, chain_id: str, skip: set[int], now: datetime) -> list[tuple[int, str]]:
    """
    The oldest approved withdrawals (at most WITHDRAW_BTC_BATCH_MAX) if they are due now: the batch is
    full, or its oldest has waited WITHDRAW_BTC_BATCH_WAIT_SECONDS for companions. Else nothing.
    """
    limit = max(1, settings.WITHDRAW_BTC_BATCH_MAX)
    rows = list(
        _approved(chain_id=chain_id, skip=skip).order_by("id").values_list("id", "withdraw_no", "approved_at")[:limit]
    )
    if not rows:
        return []
    oldest = min(approved_at for _, _, approved_at in rows)
    if len(rows) < limit and oldest > now - timedelta(seconds=settings.WITHDRAW_BTC_BATCH_WAIT_SECONDS):
        return []
    return [(row_id, withdraw_no) for row_id, withdraw_no, _ in rows]


def btc_pay(*, chain_id: str, adapter: ChainAdapter, now: datetime) -> BtcRun:
    """
    Sign and broadcast the chain's approved withdrawals in batches, oldest first (at most
    WITHDRAW_PAY_BATCH withdrawals per run). The fee rate is read once, before any lock.

    A batch the pool's free UTXOs cannot pay is halved until one fits; the oldest alone not fitting
    waits with one WITHDRAW_HOT_WALLET_SHORT alert naming the shortfall, and nothing more is signed
    this run (the next run pays it once the pool is topped up and the top-up is scanned).
    """
    run = BtcRun()
    assert isinstance(adapter, BtcAdapter)
    try:
        rate = fees.btc_fee_rate(adapter.fee_estimate())
        # Confirmations count from what the scanner has seen (the UTXO set's height); nothing scanned yet: 0.
        tip = recharges_selectors.scan_height(chain_id=chain_id) or 0
    except fees.FeeCeiling as exc:
        alert(severity=Severity.WARNING, kind="WITHDRAW_FEE_CEILING", subject=f"chain {chain_id}", text=exc.message)
        run.waits.append(exc.message)
        return run
    except NODE_ERRORS as exc:
        run.error = f"reading the fee rate failed: {type(exc).__name__}: {str(exc)[:300]}"
        alert(severity=Severity.WARNING, kind="NODE_DOWN", subject=f"chain {chain_id}", text=run.error)
        return run
    skip: set[int] = set()
    while run.signed < settings.WITHDRAW_PAY_BATCH:
        batch = _ready_batch(chain_id=chain_id, skip=skip, now=now)
        if not batch:
            break
        batch = batch[: settings.WITHDRAW_PAY_BATCH - run.signed]
        signed = _sign_fitting(batch=batch, adapter=adapter, rate=rate, tip=tip, now=now, run=run)
        if signed is None:
            break
        for withdraw_no, exc in signed.waited:
            run.waits.append(exc.message)
            waiting(exc=exc, subject=f"withdrawal {withdraw_no}")
        skip |= {row_id for row_id, withdraw_no in batch if withdraw_no in {no for no, _ in signed.waited}}
        if signed.tx_id is None:
            continue
        tx = PayoutTx.objects.select_related("payout").get(id=signed.tx_id)
        run.signed += PayoutWithdrawal.objects.filter(payout_id=tx.payout_id).count()
        step("pay.signed")
        run.sent += broadcast(tx=tx, adapter=adapter, now=now)
    return run


def _sign_fitting(
    *, batch: list[tuple[int, str]], adapter: BtcAdapter, rate: int, tip: int, now: datetime, run: BtcRun
) -> Signed | None:
    """
    Sign the batch, or its first half, quarter... when it cannot be signed whole; None: the run stops.

    The pool short of the oldest alone stops the run (it waits, alerted). Something wrong with one
    withdrawal alone (its coin's set-up, its address) leaves it waiting, alerted, returned in
    `waited`, and the run goes on without it.
    """
    while True:
        try:
            return payout_batch_sign(ids=[row_id for row_id, _ in batch], adapter=adapter, rate=rate, tip=tip, now=now)
        except PayoutWaits as exc:  # the pool cannot pay the batch
            if len(batch) > 1:
                batch = batch[: len(batch) // 2]
                continue
            run.waits.append(exc.message)
            waiting(exc=exc, subject=f"withdrawal {batch[0][1]}")
            return None
        except CHAIN_STOPS as exc:
            run.error = f"signing withdrawal {batch[0][1]} failed: {type(exc).__name__}: {str(exc)[:400]}"
            kind = "WITHDRAW_SIGN_FAILED" if isinstance(exc, WalletError) else "NODE_DOWN"
            alert(severity=Severity.WARNING, kind=kind, subject="chain BTC", text=run.error)
            return None
        except (WalletError, ValueError) as exc:
            if len(batch) > 1:
                batch = batch[: len(batch) // 2]  # the culprit is found alone, the others are paid
                continue
            text = f"signing withdrawal {batch[0][1]} failed: {type(exc).__name__}: {str(exc)[:400]}"
            return Signed(tx_id=None, waited=[(batch[0][1], PayoutWaits(text, alert_kind="WITHDRAW_SIGN_FAILED"))])


def _parents_of_unmined_children() -> list[str]:
    """
    Payouts whose CPFP child is not mined yet: the child spends their change output, which the set
    records as ours and free as soon as the parent is mined. Another payout must not pick it.
    """
    return list(
        PayoutTx.objects.filter(
            kind=PayoutTxKind.CPFP_CHILD, status__in=(PayoutTxStatus.SIGNED, PayoutTxStatus.BROADCAST)
        ).values_list("replaces__tx_hash", flat=True)
    )


def fee_shares(*, fee_sats: int, count: int) -> list[int]:
    """The network fee split evenly over a batch's withdrawals (the oldest take the odd satoshis): sums to fee_sats."""
    base, odd = divmod(fee_sats, count)
    return [base + (1 if index < odd else 0) for index in range(count)]


@transaction.atomic(durable=True)
def payout_batch_sign(*, ids: list[int], adapter: BtcAdapter, rate: int, tip: int, now: datetime) -> Signed:
    """
    Sign one payout of the approved withdrawals `ids` (those still payable) at `rate` sat/vB from the
    pool's outputs with confirmations at scanner height `tip`; store it, not broadcast.

    :raises PayoutWaits: the pool's free outputs cannot pay them (WITHDRAW_HOT_WALLET_SHORT).
    """
    locked = [records.withdrawal_lock(row_id) for row_id in sorted(ids)]
    payable: list[WithdrawRecord] = []
    waited: list[tuple[str, PayoutWaits]] = []
    for record in locked:
        if record.status != WithdrawStatus.APPROVED or record.to_user_id is not None:
            continue  # taken or decided meanwhile
        try:
            payable_check(record=record)
        except PayoutWaits as exc:  # it alone waits; reads only, so the transaction goes on
            waited.append((record.withdraw_no, exc))
            continue
        payable.append(record)
    if not payable:
        return Signed(tx_id=None, waited=waited)
    coin = CoinConfig.objects.get(coin_id=payable[0].coin_id)
    built = outputs_sign(
        payable=payable, coin=coin, adapter=adapter, rate=rate, tip=tip, ref=utxo_ref(payable[0].withdraw_no), now=now
    )
    signed, selection = built.signed, built.selection
    payout = Payout.objects.create(
        chain_id=coin.chain_id, coin=coin, from_address=built.sender, status=PayoutStatus.OPEN
    )
    shares = fee_shares(fee_sats=selection.fee_sats, count=len(payable))
    for index, (record, share) in enumerate(zip(payable, shares, strict=True)):
        PayoutWithdrawal.objects.create(
            payout=payout,
            withdraw=record,
            output_index=index,
            amount=record.actual_amount,
            fee_share=coins_selectors.amount_from_base_units(coin=coin, base_units=share),
        )
    tx = payout_tx_store(payout=payout, unsigned=built.unsigned, signed=signed, kind=PayoutTxKind.ORIGINAL)
    utxos_services.utxos_spend_pending(payout_ref=built.ref, txid=signed.tx_hash)
    for index, record in enumerate(payable):
        record.from_address, record.tx_hash, record.block_number = built.sender, signed.tx_hash, None
        remark = f"payout {payout.id} output {index} of {len(payable)}, {built.summary(rate)}"
        records.withdrawal_transition(
            record=record, auditor_id=None, action="sign", to_status=WithdrawStatus.PROCESSING, remark=remark
        )
        records.withdrawal_event(record=record, now=now)
    return Signed(tx_id=tx.id, waited=waited)


@dataclass(frozen=True)
class BuiltPayout:
    """A payout transaction signed but not stored: its inputs are locked under `ref` in this transaction."""

    ref: str
    sender: str
    selection: utxos_services.UtxoSelection
    change_address: str
    unsigned: UnsignedTx
    signed: SignedTx

    def summary(self, rate: int) -> str:
        change = self.change_address if self.selection.change_sats else "none (dust to the fee)"
        return f"{len(self.selection.utxos)} input(s), {rate} sat/vB, change to {change}"


def outputs_sign(
    *,
    payable: list[WithdrawRecord],
    coin: CoinConfig,
    adapter: BtcAdapter,
    rate: int,
    tip: int,
    ref: str,
    now: datetime,
) -> BuiltPayout:
    """
    Select and lock pool UTXOs under `ref` for one output per withdrawal (in the given order), take a
    fresh change address, build and sign the transaction and check that output i pays withdrawal i.
    Inside the caller's transaction; nothing is stored but the UTXO lock and the change address.

    :raises PayoutWaits: the pool's free outputs cannot pay them (WITHDRAW_HOT_WALLET_SHORT).
    """
    amounts = [coins_selectors.amount_to_base_units(coin=coin, amount=r.actual_amount) for r in payable]
    pool = settings.WITHDRAW_HOT_WALLET_TYPE
    try:
        selection = utxos_services.utxos_select_lock(
            wallet_type=pool,
            amount_sats=sum(amounts),
            payout_ref=ref,
            fee_rate_sat_vb=rate,
            tip_height=tip,
            now=now,
            outputs=len(payable),
            exclude_txids=_parents_of_unmined_children(),
        )
    except utxos_services.UtxoShortfall as exc:
        raise PayoutWaits(
            _shortfall_text(payable=payable, coin=coin, exc=exc), alert_kind="WITHDRAW_HOT_WALLET_SHORT"
        ) from None
    step("sign.locked")
    change = addresses_services.change_address_take(chain_id=coin.chain_id, wallet_type=pool, now=now)
    payments = [(r.to_address, amount) for r, amount in zip(payable, amounts, strict=True)]
    sender = selection.utxos[0].address
    unsigned = adapter.build_transfer(
        from_address=sender,
        to_address=payments[0][0],
        amount_base_units=payments[0][1],
        outputs=payments[1:],
        utxos=selection.inputs(),
        change_address=change.address,
        fee_rate_sat_vb=rate,
    )
    built = unsigned.payload
    if len(built.inputs) != len(selection.utxos) or unsigned.terms.fee != selection.fee_sats:  # type: ignore[attr-defined]
        raise WalletError("The BTC transaction was priced differently from its coin selection.")
    signed = signer.signer_for(coin.chain_id)(unsigned)
    outputs = raw_outputs(signed.raw)
    for index, (record, amount) in enumerate(zip(payable, amounts, strict=True)):
        if outputs[index][1:] != (amount, adapter.match_key(record.to_address)):
            raise WalletError(
                f"Output {index} of the signed BTC transaction does not pay withdrawal {record.withdraw_no}."
            )
    return BuiltPayout(
        ref=ref, sender=sender, selection=selection, change_address=change.address, unsigned=unsigned, signed=signed
    )


def _shortfall_text(*, payable: list[WithdrawRecord], coin: CoinConfig, exc: utxos_services.UtxoShortfall) -> str:
    def btc(sats: int) -> str:
        return f"{coins_selectors.amount_from_base_units(coin=coin, base_units=sats).normalize():f} {coin.coin_id}"

    what = (
        f"withdrawal {payable[0].withdraw_no}"
        if len(payable) == 1
        else f"{len(payable)} withdrawals from {payable[0].withdraw_no}"
    )
    total = sum(coins_selectors.amount_to_base_units(coin=coin, amount=r.actual_amount) for r in payable)
    return (
        f"{what} ({btc(total)}) "
        f"wait unsigned: the free confirmed outputs of hot pool {settings.WITHDRAW_HOT_WALLET_TYPE!r} hold "
        f"{btc(exc.free_sats)}, the payout needs {btc(exc.needed_sats)} with its fee: "
        f"{btc(max(exc.needed_sats - exc.free_sats, 0))} short; top up a hot address of the pool (paid once the "
        "top-up has its confirmations)"
    )


# --- child pays for parent ----------------------------------------------------------------------


def btc_bump(*, payout: Payout, parent: PayoutTx, adapter: ChainAdapter, now: datetime) -> bool:
    """
    Bump a stuck payout with a CPFP child spending its change; True if a child was signed and sent.

    Only one child per payout: a payout still stuck after its child is alerted (WITHDRAW_STUCK). A
    payout without change (all of it went to the outputs and the fee) cannot be bumped: alerted.
    """
    assert isinstance(adapter, BtcAdapter)
    if PayoutTx.objects.filter(payout=payout, kind=PayoutTxKind.CPFP_CHILD, status__in=LIVE_TX).exists():
        _stuck(payout, "it was bumped by a CPFP child already and is still not mined")
        return False
    change = _change_output(payout=payout, parent=parent)
    if change is None:
        _stuck(payout, "it has no change output a child could spend (CPFP impossible)")
        return False
    try:
        package_rate = fees.btc_cpfp_rate(estimate=adapter.fee_estimate(), parent_rate=parent.fee_rate or Decimal(1))
    except fees.FeeCeiling as exc:
        alert(severity=Severity.WARNING, kind="WITHDRAW_FEE_CEILING", subject=label(payout), text=exc.message)
        return False
    vout, value, script, owner = change
    coin = coins_selectors.chain_native_coin(chain_id=payout.chain_id)
    parent_fee = coins_selectors.amount_to_base_units(coin=coin, amount=parent.fee or Decimal(0))
    child_vsize = p2wpkh_vsize(1, 1)
    fee = max(package_rate * ((parent.vsize or 0) + child_vsize) - parent_fee, child_vsize * package_rate)
    key = addresses_selectors.public_keys(address_ids=[owner.id]).get(owner.id)
    if key is None:
        _stuck(payout, f"its change address {owner.address} has no key to sign a child")
        return False
    utxo = Utxo(txid=parent.tx_hash, vout=vout, value_sats=value, script_hex=script, public_key_hex=key[1])
    try:
        child_id = _sign_child(
            payout_id=payout.id, parent_id=parent.id, adapter=adapter, utxo=utxo, owner=owner.address, fee=fee, now=now
        )
    except (ValueError, WalletError, *CHAIN_STOPS) as exc:
        _stuck(payout, f"its CPFP child could not be signed: {type(exc).__name__}: {str(exc)[:200]}")
        return False
    if child_id is None:
        return False
    child = PayoutTx.objects.select_related("payout").get(id=child_id)
    step("cpfp.signed")
    broadcast(tx=child, adapter=adapter, now=now)
    return True


def _change_output(*, payout: Payout, parent: PayoutTx):
    """(vout, satoshis, script, address row) of the parent's change output, or None if it has none."""
    paid = set(PayoutWithdrawal.objects.filter(payout=payout).values_list("output_index", flat=True))
    for vout, value, script in raw_outputs(parent.raw):
        if vout in paid:
            continue
        owner = addresses_selectors.address_of_btc_script(script_hex=script)
        if owner is not None:
            return vout, value, script, owner
    return None


@transaction.atomic(durable=True)
def _sign_child(
    *, payout_id: int, parent_id: int, adapter: BtcAdapter, utxo: Utxo, owner: str, fee: int, now: datetime
) -> int | None:
    payout, withdrawals = payout_lock(payout_id)
    parent = PayoutTx.objects.get(id=parent_id)
    if payout.status != PayoutStatus.OPEN or parent.status not in (PayoutTxStatus.SIGNED, PayoutTxStatus.BROADCAST):
        return None
    if PayoutTx.objects.filter(payout=payout, kind=PayoutTxKind.CPFP_CHILD, status__in=LIVE_TX).exists():
        return None
    to = addresses_services.change_address_take(
        chain_id=payout.chain_id, wallet_type=settings.WITHDRAW_HOT_WALLET_TYPE, now=now
    )
    unsigned = adapter.build_spend_all(from_address=owner, to_address=to.address, utxos=[utxo], fee_sats=fee)
    signed = signer.signer_for(payout.chain_id)(unsigned)
    child = payout_tx_store(
        payout=payout, unsigned=unsigned, signed=signed, kind=PayoutTxKind.CPFP_CHILD, replaces=parent
    )
    for record in withdrawals:
        if record.status == WithdrawStatus.PROCESSING:
            records.withdrawal_log(
                record=record,
                auditor_id=None,
                action="cpfp",
                to_status=WithdrawStatus.PROCESSING,
                remark=f"stuck: child {signed.tx_hash} spends change {utxo.txid}:{utxo.vout}, fee {fee} sat",
            )
    return child.id


def _stuck(payout: Payout, why: str) -> None:
    alert(
        severity=Severity.CRITICAL,
        kind="WITHDRAW_STUCK",
        subject=label(payout),
        text=(
            f"{label(payout)} (payout {payout.id}) is not mined after {settings.WITHDRAW_STUCK_SECONDS} s and {why}. "
            "Check the node's mempool (getrawmempool) and the network's fees; see README 'BTC payouts'"
        ),
    )
