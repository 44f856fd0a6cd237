"""
The EVM payout run's fast path: a group of approved ether withdrawals to recipients without code
signed in one database transaction.

One by one (signing._sign), each payout costs a transaction of its own and some twenty queries,
most of the time spent by the ORM building them. A group does the same steps once for all:
- its withdrawals are locked in one statement (in id order, as one by one in that order would);
- payable_screen clears, with one query per check, those payable_check would certainly let
  through; any other (a user with a hold, a destination with a blacklist entry, an address-book
  user, a coin switched off or its breaker tripped) is left to the one-by-one path, which decides
  and says why; the group is screened again after its signatures, before its writes (anything
  no longer clear then rolls the group back: one by one decides each);
- the hot addresses are picked in order with one read of the pool (hot_picks), and each address's
  nonces are taken as one consecutive block from its cursor, under the same lock and with the
  same account of the run (EvmRun.nonce_take) as one by one;
- each transfer is built and checked against the run's account as one by one (sign_transfer,
  exactly 21,000 gas: see evm_run), taken off the account at once so that the next of the group
  sees it, and signed;
- the payouts, their links, transactions, audit rows, withdrawals and events are written in one
  statement per table.
The group commits whole or not at all: a withdrawal of it that cannot be signed now (the account
short, the run's account out of date, a signer or node error) rolls back the group, nonces
included; the run's accounts are dropped (read again from the node) and its withdrawals go one by
one, where each is decided alone. Killed anywhere before the commit, nothing of the group is
stored or sent; after it, its transactions are SIGNED and the next run sends them first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from chains.base import ChainAdapter
from coins.models import CoinConfig
from wallet_project.errors import WalletError
from withdrawals import records
from withdrawals.models import (
    Payout,
    PayoutStatus,
    PayoutTx,
    PayoutTxKind,
    PayoutWithdrawal,
    WithdrawRecord,
    WithdrawStatus,
)
from withdrawals.payout import evm_run, hot_pick
from withdrawals.payout.common import CHAIN_STOPS, PayoutWaits, payable_screen, payout_tx_row, step
from withdrawals.payout.transfer import sign_transfer

logger = logging.getLogger("withdrawals.payout")

# What makes a group fall back to one by one (each then fails, waits or stops the run alone).
_NOT_WHOLE: tuple[type[Exception], ...] = (evm_run.Reread, PayoutWaits, WalletError, ValueError, *CHAIN_STOPS)


@dataclass
class GroupSigned:
    """A group's outcome: its committed payouts, and the withdrawals left to the one-by-one path."""

    done: list[tuple[PayoutTx, evm_run.Signed]]
    left: list[int]


def group_sign(
    *, withdraw_ids: Sequence[int], coin: CoinConfig, adapter: ChainAdapter, terms: dict[str, int],
    run: evm_run.EvmRun, now: datetime,
) -> GroupSigned:  # fmt: skip
    """
    Sign a group of approved withdrawals of coin (the chain's own) to recipients the run found
    without code, in one transaction (see the module's docstring); the rest is the caller's, one by one.
    """
    try:
        return _group_sign(withdraw_ids=withdraw_ids, coin=coin, adapter=adapter, terms=terms, run=run, now=now)
    except _NOT_WHOLE as exc:
        # Rolled back whole; the accounts may hold what the group took off them.
        run.accounts.clear()
        logger.info("payout group of %d not signed whole (%s): one by one", len(withdraw_ids), type(exc).__name__)
        return GroupSigned(done=[], left=list(withdraw_ids))


@transaction.atomic(durable=True)
def _group_sign(
    *, withdraw_ids: Sequence[int], coin: CoinConfig, adapter: ChainAdapter, terms: dict[str, int],
    run: evm_run.EvmRun, now: datetime,
) -> GroupSigned:  # fmt: skip
    locked = records.withdrawals_lock(withdraw_ids)
    step("sign.locked")
    # Taken or decided meanwhile: nothing to do (as one by one).
    payable = [r for r in locked if r.status == WithdrawStatus.APPROVED and r.to_user_id is None]
    coin = CoinConfig.objects.get(coin_id=coin.coin_id)  # as read under the locks
    clear = payable_screen(records=[r for r in payable if r.coin_id == coin.coin_id], coin=coin)
    group = [r for r in payable if r.id in clear and run.plain(coin=coin, record=r)]
    left = [r.id for r in payable if r not in group]
    if not group:
        return GroupSigned(done=[], left=left)
    hots = hot_pick.hot_picks(
        coin=coin, wanted=[(r.actual_amount, r.user_id) for r in group], balances=run.hot_balances(coin)
    )
    by_address: dict[str, list[WithdrawRecord]] = {}
    for record, hot in zip(group, hots, strict=True):
        by_address.setdefault(hot.address, []).append(record)
    nonces: dict[int, int] = {}
    for address, theirs in by_address.items():
        first = run.nonce_take(address=address, coin=coin, withdraw_no=theirs[0].withdraw_no, count=len(theirs))
        nonces.update({record.id: first + i for i, record in enumerate(theirs)})
    payouts, links, txs, effects, remarks = [], [], [], [], []
    for record, hot in zip(group, hots, strict=True):
        nonce = nonces[record.id]
        unsigned, signed = sign_transfer(
            record=record, coin=coin, adapter=adapter, from_address=hot.address, nonce=nonce, terms=terms,
            payout=None, run=run,
        )  # fmt: skip
        effect = run.signed_effect(address=hot.address, nonce=nonce, unsigned=unsigned)
        run.account_take(effect)  # the next of the group is checked without what this one spends
        payout = Payout(chain_id=coin.chain_id, coin=coin, from_address=hot.address, nonce=nonce,
                        status=PayoutStatus.OPEN)  # fmt: skip
        payouts.append(payout)
        links.append(PayoutWithdrawal(payout=payout, withdraw=record, amount=record.actual_amount))
        txs.append(payout_tx_row(payout=payout, unsigned=unsigned, signed=signed, kind=PayoutTxKind.ORIGINAL))
        effects.append(effect)
        record.from_address, record.tx_hash, record.block_number = hot.address, signed.tx_hash, None
        remarks.append(f"from {hot.address}, nonce {nonce}")
    # One by one, each withdrawal is checked just before its own signature; the group's screen came
    # before all of them. A breaker tripped, a hold, a blacklist entry or a switch committed since
    # stops the whole group, and one by one decides each.
    if payable_screen(records=group, coin=CoinConfig.objects.get(coin_id=coin.coin_id)) != {r.id for r in group}:
        raise PayoutWaits(f"payout group of {len(group)}: screened again, not clear any more", alert_kind=None)
    Payout.objects.bulk_create(payouts)  # MariaDB hands back their ids (INSERT ... RETURNING)
    PayoutWithdrawal.objects.bulk_create(links)
    PayoutTx.objects.bulk_create(txs)
    # update_time is the time of the write, as auto_now writes it one by one: the run's start may
    # come before a withdrawal's approval (a later page of a long run).
    records.withdrawals_transition(
        records=group, action="sign", to_status=WithdrawStatus.PROCESSING, remarks=remarks, now=timezone.now()
    )
    records.withdrawal_events(records=group, now=now)
    return GroupSigned(done=list(zip(txs, effects, strict=True)), left=left)
