"""
Signing: an approved withdrawal becomes a payout with its first transaction, stored before broadcast.

One by one here; EVM ether to recipients without code in groups (evm_group). Building, checking
and signing one transfer is transfer.sign_transfer, which every later transaction shares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from addresses import signer
from chains import registry as chains_registry
from chains.base import ChainAdapter
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from monitoring.models import Severity
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
from withdrawals.payout import btc, evm_group, evm_run, fees, hot_pick
from withdrawals.payout.broadcast import broadcast
from withdrawals.payout.common import (
    CHAIN_STOPS,
    NONCE_CHAINS,
    ONCHAIN_CHAINS,
    PayoutResult,
    PayoutWaits,
    alert,
    payable_check,
    payout_tx_store,
    step,
    waiting,
)
from withdrawals.payout.transfer import sign_transfer
from withdrawals.services import WithdrawalRefused


def withdrawals_pay(*, chain_id: str, now: datetime | None = None, adapter: ChainAdapter | None = None) -> PayoutResult:
    """
    Sign and broadcast the chain's approved withdrawals to outside addresses, oldest first.

    Each is signed in a transaction that locks it, picks a hot address of WITHDRAW_HOT_WALLET_TYPE,
    allocates that address's nonce and stores its payout and signed transaction, status PROCESSING;
    the broadcast comes after the commit. A crash in between leaves a stored transaction that the
    next run (or withdrawals_confirm) sends: the same transaction, never a second payment. The EVM
    fee market is read once per run, before any lock; above the fee ceiling nothing is signed.
    """
    moment = now or timezone.now()
    if chain_id not in ONCHAIN_CHAINS:
        return PayoutResult(chain_id=chain_id, error=f"on-chain withdrawals of {chain_id} are not built yet")
    adapter = adapter or chains_registry.adapter_for(chain_id)
    signed = sent = 0
    # Transactions signed but not taken by the node yet go first: they hold their address's nonce.
    for tx in (
        PayoutTx.objects.filter(
            status=PayoutTxStatus.SIGNED, payout__status=PayoutStatus.OPEN, payout__chain_id=chain_id
        )
        .select_related("payout")
        .order_by("id")
    ):
        sent += broadcast(tx=tx, adapter=adapter, now=moment)
    if chain_id in btc.UTXO_CHAINS:
        run = btc.btc_pay(chain_id=chain_id, adapter=adapter, now=moment)
        return _result(
            chain_id, signed + run.signed, sent + run.sent, waits=run.waits, waiting=len(run.waits), error=run.error
        )
    run = evm_run.EvmRun(adapter=adapter, chain_id=chain_id) if chain_id in NONCE_CHAINS else None
    try:
        with signer.signing_session():
            result = _pay(chain_id=chain_id, adapter=adapter, run=run, sent=sent, now=moment)
    finally:
        # However the run ends, what it committed goes to the node now (a crash before this leaves
        # them SIGNED: the next run sends them first).
        late = run.send(now=moment) if run is not None and run.unsent else 0
    return dataclasses.replace(result, broadcast=result.broadcast + late)


def _pay(*, chain_id: str, adapter: ChainAdapter, run: evm_run.EvmRun | None, sent: int, now: datetime) -> PayoutResult:
    """
    Sign the chain's approved withdrawals: on EVM, ether to recipients without code in groups
    (evm_group), every other one (and any a group leaves) one by one; the run queues their sends.
    """
    signed = 0
    waits: list[str] = []
    terms: dict[str, int] | None = None
    # Nothing stored for one that fails below: it stays approved and is tried again next run, after
    # the others (a nonce it allocated rolled back with it, so a later withdrawal may take it).
    for page in _approved(chain_id=chain_id):
        withdraw_no = page[0][1]
        try:
            if terms is None and run is not None:
                # Read once, before any lock: a slow node then delays no auditor and no other
                # signer. So is the recipients' code, a page at a time.
                terms = fees.evm_terms(adapter.fee_market())  # type: ignore[attr-defined]
            if run is not None:
                run.recipients_read([to for _, _, to, _ in page])
        except fees.FeeCeiling as exc:
            # The whole chain waits: no withdrawal of it is signed while the market is above the ceiling.
            alert(severity=Severity.WARNING, kind="WITHDRAW_FEE_CEILING", subject=f"chain {chain_id}", text=exc.message)
            pending = _approved_query(chain_id=chain_id).count()
            return _result(chain_id, signed, sent, waits=[*waits, exc.message], waiting=len(waits) + pending)
        except CHAIN_STOPS as exc:
            return _stopped(chain_id, signed, sent, waits, withdraw_no=withdraw_no, exc=exc)
        for unit in _units(page=page, run=run):
            if signed >= settings.WITHDRAW_PAY_BATCH:
                return _result(chain_id, signed, sent, waits=waits, waiting=len(waits))
            alone = unit.withdrawals
            if unit.coin is not None and run is not None:
                room = settings.WITHDRAW_PAY_BATCH - signed
                result = evm_group.group_sign(
                    withdraw_ids=[withdraw_id for withdraw_id, _ in alone[:room]], coin=unit.coin, adapter=adapter,
                    terms=terms or {}, run=run, now=now,
                )  # fmt: skip
                for tx, effect in result.done:
                    signed += 1
                    step("pay.signed")
                    sent += run.queued(effect=effect, tx=tx, now=now)
                # What the group left goes one by one now, before the later ones: oldest first (with
                # those the run's batch left it no room for, which no later page reaches).
                alone = [(withdraw_id, number) for withdraw_id, number in alone[:room] if withdraw_id in result.left]
                alone += unit.withdrawals[room:]
            for withdraw_id, withdraw_no in alone:
                if signed >= settings.WITHDRAW_PAY_BATCH:
                    return _result(chain_id, signed, sent, waits=waits, waiting=len(waits))
                try:
                    done = _sign_again_if_stale(
                        withdraw_id=withdraw_id, adapter=adapter, terms=terms or {}, run=run, now=now
                    )
                except PayoutWaits as exc:
                    waits.append(exc.message)
                    waiting(exc=exc, subject=f"withdrawal {withdraw_no}")
                    continue
                except CHAIN_STOPS as exc:
                    return _stopped(chain_id, signed, sent, waits, withdraw_no=withdraw_no, exc=exc)
                except (WalletError, ValueError) as exc:
                    # Something about this withdrawal (its coin's set-up, its address): the next one may be fine.
                    text = f"signing withdrawal {withdraw_no} failed: {type(exc).__name__}: {str(exc)[:400]}"
                    waits.append(text)
                    alert(
                        severity=Severity.WARNING,
                        kind="WITHDRAW_SIGN_FAILED",
                        subject=f"withdrawal {withdraw_no}",
                        text=text,
                    )
                    continue
                if done is None:
                    continue  # taken or decided meanwhile
                tx, effect = done
                signed += 1
                step("pay.signed")
                if run is not None and effect is not None:
                    sent += run.committed(effect=effect, tx=tx, now=now)
                else:
                    sent += broadcast(tx=tx, adapter=adapter, now=now)
    return _result(chain_id, signed, sent, waits=waits, waiting=len(waits))


@dataclasses.dataclass
class _Unit:
    """Withdrawals of a page signed together (coin set: an EVM group of that coin) or one by one."""

    withdrawals: list[tuple[int, str]]
    coin: CoinConfig | None = None


def _units(*, page: list[tuple[int, str, str, str]], run: evm_run.EvmRun | None) -> list[_Unit]:
    """
    The page in order, cut into groups (consecutive ether withdrawals of one coin to recipients the
    run found without code, at most WITHDRAW_EVM_SIGN_GROUP) and single withdrawals.
    """
    if run is None:
        return [_Unit([(withdraw_id, number)]) for withdraw_id, number, _, _ in page]
    coins = {c.coin_id: c for c in CoinConfig.objects.filter(coin_id__in={coin_id for *_, coin_id in page})}
    units: list[_Unit] = []
    for withdraw_id, number, to_address, coin_id in page:
        coin = coins.get(coin_id)
        if coin is None or not coins_selectors.coin_is_native(coin=coin) or run.code[to_address.lower()]:
            units.append(_Unit([(withdraw_id, number)]))
            continue
        last = units[-1] if units else None
        if (
            last is None
            or last.coin is None
            or last.coin.coin_id != coin_id
            or (len(last.withdrawals) >= settings.WITHDRAW_EVM_SIGN_GROUP)
        ):
            units.append(_Unit([], coin=coin))
        units[-1].withdrawals.append((withdraw_id, number))
    return units


def _result(
    chain_id: str, signed: int, sent: int, *, waits: list[str], waiting: int, error: str | None = None
) -> PayoutResult:
    return PayoutResult(
        chain_id=chain_id, signed=signed, broadcast=sent, waiting=waiting, error=error, waits=tuple(waits)
    )


def _stopped(
    chain_id: str, signed: int, sent: int, waits: list[str], *, withdraw_no: str, exc: Exception
) -> PayoutResult:
    """The run of the chain stops here: the node is down or no hot address can sign (alerted once)."""
    text = f"signing withdrawal {withdraw_no} failed: {type(exc).__name__}: {str(exc)[:400]}"
    kind = "WITHDRAW_SIGN_FAILED" if isinstance(exc, WalletError) else "NODE_DOWN"
    alert(severity=Severity.WARNING, kind=kind, subject=f"chain {chain_id}", text=text)
    return _result(chain_id, signed, sent, waits=waits, waiting=len(waits), error=text)


def _approved_query(*, chain_id: str) -> Any:
    return WithdrawRecord.objects.filter(status=WithdrawStatus.APPROVED, to_user__isnull=True, coin__chain_id=chain_id)


def _approved(*, chain_id: str) -> Iterator[list[tuple[int, str, str, str]]]:
    """Pages of (id, withdraw_no, to_address, coin_id) of the chain's approved withdrawals to outside
    addresses, oldest first.

    Every one is reached however many older ones wait: those can never hold back the rest.
    """
    last_id = 0
    while True:
        page = list(
            _approved_query(chain_id=chain_id)
            .filter(id__gt=last_id)
            .order_by("id")
            .values_list("id", "withdraw_no", "to_address", "coin_id")[: settings.WITHDRAW_PAY_BATCH]
        )
        if page:
            yield page
        if len(page) < settings.WITHDRAW_PAY_BATCH:
            return
        last_id = page[-1][0]


def _sign_again_if_stale(
    *, withdraw_id: int, adapter: ChainAdapter, terms: dict[str, int], run: evm_run.EvmRun | None, now: datetime
) -> tuple[PayoutTx, evm_run.Signed | None] | None:
    """_sign; once more, on figures read again, when the run's account of the hot address was out of date."""
    try:
        return _sign(withdraw_id=withdraw_id, adapter=adapter, terms=terms, run=run, now=now)
    except evm_run.Reread:
        # Rolled back with its nonce. With the run's accounts dropped the node is read again under
        # the lock, whichever hot address is picked this time: no second Reread.
        assert run is not None
        run.accounts.clear()
        return _sign(withdraw_id=withdraw_id, adapter=adapter, terms=terms, run=run, now=now)


@transaction.atomic(durable=True)
def _sign(
    *, withdraw_id: int, adapter: ChainAdapter, terms: dict[str, int], run: evm_run.EvmRun | None, now: datetime
) -> tuple[PayoutTx, evm_run.Signed | None] | None:
    record = records.withdrawal_lock(withdraw_id)
    step("sign.locked")
    if record.status != WithdrawStatus.APPROVED or record.to_user_id is not None:
        return None
    coin = payable_check(record=record)
    done = _sign_first(record=record, coin=coin, adapter=adapter, terms=terms, run=run)
    records.withdrawal_event(record=record, now=now)
    return done


def _sign_first(
    *,
    record: WithdrawRecord,
    coin: CoinConfig,
    adapter: ChainAdapter,
    terms: dict[str, int],
    run: evm_run.EvmRun | None,
) -> tuple[PayoutTx, evm_run.Signed | None]:
    """Pick the hot address, then build, check, sign and store the payout of a locked withdrawal (PROCESSING)."""
    if not coins_selectors.coin_is_native(coin=coin) and not coin.contract_address:
        # A token without its contract would be paid in the chain's own coin.
        raise WithdrawalRefused(f"{coin.coin_id} has no contract address configured: ops must set it.")
    # Picked on cached real balances by the configured strategy; what it holds on chain is checked
    # below (shortfall) before anything is signed.
    balances = run.hot_balances(coin) if run is not None else None
    hot = hot_pick.hot_pick(coin=coin, amount=record.actual_amount, user_id=record.user_id, balances=balances)
    nonce = None
    if run is not None:
        # Under the address's nonce-cursor lock; the node read when the run's account is new or stale.
        nonce = run.nonce_take(address=hot.address, coin=coin, withdraw_no=record.withdraw_no)
    unsigned, signed = sign_transfer(
        record=record,
        coin=coin,
        adapter=adapter,
        from_address=hot.address,
        nonce=nonce,
        terms=terms,
        payout=None,
        run=run,
    )
    payout = Payout.objects.create(
        chain_id=coin.chain_id, coin=coin, from_address=hot.address, nonce=nonce, status=PayoutStatus.OPEN
    )
    PayoutWithdrawal.objects.create(payout=payout, withdraw=record, amount=record.actual_amount)
    tx = payout_tx_store(payout=payout, unsigned=unsigned, signed=signed, kind=PayoutTxKind.ORIGINAL)
    record.from_address, record.tx_hash, record.block_number = hot.address, signed.tx_hash, None
    remark = f"from {hot.address}" + (f", nonce {nonce}" if nonce is not None else "")
    records.withdrawal_transition(
        record=record, auditor_id=None, action="sign", to_status=WithdrawStatus.PROCESSING, remark=remark
    )
    effect = None
    if run is not None and nonce is not None:
        effect = run.signed_effect(address=hot.address, nonce=nonce, unsigned=unsigned)
    return tx, effect


@transaction.atomic(durable=True)
def payout_nonces_forget(*, chain_id: str) -> int:
    """
    Release the nonces of the chain's settled payouts after the chain was replaced by a new one (a
    dev chain started empty, chains.services.nonces_forget); return how many were released.

    The new chain numbers every address from 0 again, and two payouts of an address never share a
    nonce (uk_payout_nonce): without this the first payout on the new chain could not be stored. A
    settled payout's nonce stays on its transactions (payout_tx.nonce); open ones keep theirs.
    """
    return (
        Payout.objects.select_for_update()
        .filter(chain_id=chain_id, nonce__isnull=False)
        .exclude(status=PayoutStatus.OPEN)
        .update(nonce=None)
    )
