"""
What one EVM payout run (withdrawals_pay) knows of its hot addresses and recipients, so that a
payout costs no node request of its own in the common case, and its sends go out in batches.

Per hot address, the node is read once per run (its next nonce, its mined count, its balance and
token balances), under the address's nonce-cursor lock, with the reserve of its open payouts not in
a block yet from the database. From then on the run keeps its own account: each payout it commits
takes its nonce and its most expensive cost (value + gas limit x max fee, the token amount) off what
the address had free. That account only errs towards refusing:
- the balance read excludes nothing the run signed later (each is taken off when committed), and a
  payout mined since still counts as not in a block (its cost counted twice at worst);
- any other sender from the address (a treasury transfer to cold, a sweep's gas-station top-up, an
  ops re-sign) takes its nonce from the same cursor: the nonce the run is then handed is not the one
  it expected, and it reads the node again before signing anything (EvmRun.nonce_take); while a
  nonce below the one handed out is neither mined nor an open payout's (another sender's transfer
  not in a block yet, which the balance does not show), nothing of the address is signed;
- a payout the account finds short is not refused on it: the node is read again first, and only a
  shortfall on fresh figures refuses it.
A transfer of ether to a recipient without code (asked once per recipient per run, in batches)
runs no code: it costs exactly 21,000 gas and can fail only for lack of funds, which the account
covers, so it is neither estimated nor simulated. A recipient with code (a contract wallet, an
EIP-7702 delegated account) and every token transfer are estimated and simulated per payout as
before. Should a recipient get code after the run asked (a contract deployed to it meanwhile), the
21,000-gas transfer fails on chain: withdrawals_confirm fails the payout and unfreezes the amount;
only its gas is lost, never money paid twice.

The sends: a payout's transaction is committed first (stored before broadcast), then sent with the
others of the run in JSON-RPC batches of WITHDRAW_EVM_SEND_BATCH (broadcast_batch). A crash between
the commit and the batch leaves SIGNED transactions that the next run (or withdrawals_confirm)
sends first. While the run holds its own committed, unsent transactions, they do not stop it from
signing the next ones of their address; a SIGNED one of any other run still does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.conf import settings

from chains import services as chains_services
from chains.base import ChainAdapter, Shortfall, UnsignedTx
from chains.evm import shortfall_of, transfer_needs
from coins import selectors as coins_selectors
from coins.models import CoinConfig
from withdrawals.models import PayoutTx, WithdrawRecord
from withdrawals.payout import hot_pick, reserve
from withdrawals.payout.broadcast import broadcast_batch
from withdrawals.payout.common import PayoutWaits


class Reread(Exception):
    """The run's account of a hot address may be out of date: read the node again, then sign."""


@dataclass
class HotAccount:
    """The run's account of one hot address (see the module's docstring)."""

    address: str
    next_nonce: int  # the nonce the cursor hands out next if no one else used the address
    ether_free: int  # wei free of every open payout not in a block when read, less what the run signed since
    mined_below: int  # the node's mined count when read: payouts with nonces below it are in a block
    tokens_free: dict[str, int] = field(default_factory=dict)  # contract -> base units free, read when first needed
    fresh: bool = True  # read within the signing transaction under way


@dataclass(frozen=True)
class Signed:
    """What a committed payout takes off its address's account."""

    address: str
    nonce: int
    ether: int
    gas: int
    contract: str | None
    tokens: int


class EvmRun:
    """One withdrawals_pay run of an EVM chain: its hot accounts, recipients' code, unsent batch."""

    def __init__(self, *, adapter: ChainAdapter, chain_id: str) -> None:
        self.adapter = adapter
        self.chain_id = chain_id
        self.accounts: dict[str, HotAccount] = {}
        self.code: dict[str, bool] = {}
        self.unsent: list[PayoutTx] = []
        # address -> {nonce: gas cost in wei} of what the run signed from it (kept across re-reads).
        self.gas_signed: dict[str, dict[int, int]] = {}
        self._balances: dict[str, dict[int, Decimal]] = {}

    # --- before any lock -------------------------------------------------------------
    def recipients_read(self, addresses: list[str]) -> None:
        """Ask the node, in batches, which of these recipients hold code (once per run each)."""
        unknown = {a.lower() for a in addresses} - self.code.keys()
        if unknown:
            self.code.update(self.adapter.has_code(unknown))  # type: ignore[attr-defined]

    def hot_balances(self, coin: CoinConfig) -> dict[int, Decimal]:
        """The withdraw pool's cached balances (they only rank the addresses), read once per run per coin."""
        if coin.coin_id not in self._balances:
            self._balances[coin.coin_id] = hot_pick.hot_balances(
                coin=coin, wallet_type=settings.WITHDRAW_HOT_WALLET_TYPE
            )
        return self._balances[coin.coin_id]

    # --- inside a signing transaction -------------------------------------------------
    def nonce_take(self, *, address: str, coin: CoinConfig, withdraw_no: str, count: int = 1) -> int:
        """
        Allocate the address's next nonce, or count consecutive ones (the first returned; a group of
        payouts, see evm_group); the cursor row stays locked until the caller commits.

        With an account of the address, its expected nonce is offered as the node's count: handed
        that one, nobody else used the address since the account was read. Handed another, someone
        did: Reread (the caller rolls back and calls again). Without an account the node is read
        now, under the cursor lock, and a SIGNED transaction of the address that this run is not
        about to send stops it (PayoutWaits), as it holds a nonce the node does not have.
        """
        account = self.accounts.get(address)
        if account is not None:
            nonce = chains_services.nonce_allocate(
                chain_id=self.chain_id, address=address, node_next=account.next_nonce, count=count
            )
            if nonce != account.next_nonce:
                del self.accounts[address]
                raise Reread(address)
            account.fresh = False
            return nonce
        adapter = self.adapter
        nonce = chains_services.nonce_allocate(
            chain_id=self.chain_id,
            address=address,
            node_next=adapter.next_nonce(address),  # type: ignore[attr-defined]
            count=count,
        )
        own = [tx.id for tx in self.unsent if tx.payout.from_address == address]
        if reserve.hot_unsent(from_address=address, but=own):
            # A transaction of this address the node has not taken holds its nonce: later ones would
            # queue behind it unmined. It is sent again first (withdrawals_pay, withdrawals_confirm),
            # and alerted there if the node refuses it.
            raise PayoutWaits(
                f"withdrawal {withdraw_no} waits unsigned: hot address {address} has a signed "
                "transaction the node has not taken yet",
                alert_kind=None,
            )
        # Mined count before the balance: a block mined between the two reads then makes the
        # reserve err high (a payout counted though the balance already shows it), never low.
        mined_below = adapter.mined_count(address)  # type: ignore[attr-defined]
        if foreign := reserve.foreign_unmined(from_address=address, mined_below=mined_below, below=nonce):
            # Another sender's transaction (a treasury transfer to cold, a gas top-up) is not in a
            # block yet: the balance still holds what it spends, so nothing is signed until it is.
            raise PayoutWaits(
                f"withdrawal {withdraw_no} waits unsigned: hot address {address} has another sender's "
                f"transaction (nonce {foreign[0]}) not in a block yet",
                alert_kind=None,
            )
        reserved, _ = reserve.unmined_payouts(coin=coin, from_address=address, payout=None, mined_below=mined_below)
        # The reserve counts the amounts of open payouts, not their gas: that of the run's own ones
        # not in a block is taken off too.
        own_gas = sum(gas for n, gas in self.gas_signed.get(address, {}).items() if n >= mined_below)
        ether = adapter.balance(address) - reserved - own_gas  # type: ignore[attr-defined]
        self.accounts[address] = HotAccount(
            address=address, next_nonce=nonce, ether_free=ether, mined_below=mined_below
        )
        return nonce

    def shortfall(self, *, address: str, unsigned: UnsignedTx, coin: CoinConfig) -> Shortfall | None:
        """
        What the address lacks for this transfer by the run's account (None: nothing); call after
        nonce_take. Short on an account not read in this transaction: Reread (fresh figures decide,
        never stale ones).
        """
        account = self.accounts[address]

        def tokens(contract: str) -> int:
            key = contract.lower()
            if key not in account.tokens_free:
                _, reserved = reserve.unmined_payouts(
                    coin=coin, from_address=account.address, payout=None, mined_below=account.mined_below
                )
                held = self.adapter.balance(account.address, contract=contract)  # type: ignore[attr-defined]
                account.tokens_free[key] = held - reserved
            return account.tokens_free[key]

        short = shortfall_of(unsigned, ether=account.ether_free, tokens=tokens)
        if short is not None and not account.fresh:
            del self.accounts[account.address]
            raise Reread(account.address)
        return short

    def plain(self, *, coin: CoinConfig, record: WithdrawRecord) -> bool:
        """Whether the payout is ether to an address without code: 21,000 gas, nothing to simulate."""
        if not coins_selectors.coin_is_native(coin=coin):
            return False
        to = record.to_address.lower()
        if to not in self.code:
            self.recipients_read([to])
        return not self.code[to]

    def signed_effect(self, *, address: str, nonce: int, unsigned: UnsignedTx) -> Signed:
        ether, contract, tokens = transfer_needs(unsigned)
        gas = ether - int(unsigned.payload["value"])  # type: ignore[index]
        return Signed(address=address, nonce=nonce, ether=ether, gas=gas, contract=contract, tokens=tokens)

    # --- after the commit --------------------------------------------------------------
    def committed(self, *, effect: Signed, tx: PayoutTx, now: datetime) -> int:
        """Book a committed payout on its account and queue its send; how many the node took (a batch was due)."""
        self.account_take(effect)
        return self.queued(effect=effect, tx=tx, now=now)

    def account_take(self, effect: Signed) -> None:
        """
        Take a payout off its address's account: once committed, or (a group) once signed inside the
        group's transaction, whose failure drops the run's accounts (they are read again).
        """
        account = self.accounts.get(effect.address)
        if account is not None:
            account.next_nonce = effect.nonce + 1
            account.ether_free -= effect.ether
            if effect.contract is not None and effect.contract.lower() in account.tokens_free:
                account.tokens_free[effect.contract.lower()] -= effect.tokens

    def queued(self, *, effect: Signed, tx: PayoutTx, now: datetime) -> int:
        """Queue a committed payout's send; how many the node took (a batch was due)."""
        self.gas_signed.setdefault(effect.address, {})[effect.nonce] = effect.gas
        self.unsent.append(tx)
        if len(self.unsent) >= settings.WITHDRAW_EVM_SEND_BATCH:
            return self.send(now=now)
        return 0

    def send(self, *, now: datetime) -> int:
        """Send the run's committed, unsent transactions in one batch; how many the node has now."""
        txs, self.unsent = self.unsent, []
        sent = broadcast_batch(txs=txs, adapter=self.adapter, now=now)
        if sent < len(txs):
            # A refused one holds its nonce: the next payout of its address reads again and waits.
            for tx in txs:
                self.accounts.pop(tx.payout.from_address, None)
        return sent
