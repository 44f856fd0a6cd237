"""
What an account chain's sweep needs from its node, per chain: the EVM (ETH, ERC20) and TRON (TRX,
TRC20) sides of sweeps.account. Reads and builds only: nothing here signs, stores or sends.

Sizing the gas top-up of a token sweep (never a fixed amount): EVM, the token transfer's gas
estimate x ETH_GAS_LIMIT_MARGIN is its gas limit, times the most it offers per gas now (the shared
fee policy, chains.fees) x SWEEP_TOPUP_MARGIN, less the ether the address already holds. TRON, the
transfer's energy estimate x the energy price plus the bandwidth its bytes burn, x SWEEP_TOPUP_MARGIN
(at least the call's fee_limit + bandwidth, what the node wants to see), less the TRX it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from eth_utils import to_checksum_address

from chains import fees as chains_fees
from chains.base import ChainAdapter, TxStatus, UnsignedTx
from chains.evm import NATIVE_GAS, SELECTOR_TRANSFER, with_margin
from chains.rpc import RpcError
from sweeps.models import SweepJob


class Wait(Exception):
    """The job cannot move on now (fees above the ceiling, no estimate); the message says why."""


@dataclass(frozen=True)
class Prepared:
    """A transaction ready to be built under the job's lock: build(nonce) gives it unsigned."""

    amount_base_units: int
    build: Callable[[int | None], UnsignedTx]
    # EVM fee terms (or TRON fee_limit) to store on the job beside it.
    terms: dict[str, int]
    # True: sized from the balance just read (value + the most gas costs = that balance), so the
    # sender's shortfall check would read the same balance again to find nothing missing.
    covered: bool = False


@dataclass(frozen=True)
class Skip:
    reason: str


@dataclass(frozen=True)
class TopUpPlan:
    """What a token sweep needs: None top-up when the address holds enough already."""

    gas_terms: dict[str, int]  # stored on the job: what the sweep will offer
    topup_base_units: int  # 0: no top-up needed
    needed_base_units: int
    held_base_units: int


def _up(value: Decimal) -> int:
    return chains_fees.up(value)


class EvmOps:
    chain_id = "ETH"
    nonces = True

    def __init__(self, adapter: ChainAdapter) -> None:
        self.adapter: Any = adapter
        self._terms: dict[str, int] | None = None
        # Read for many addresses in one batched request at the start of a run, used once each.
        self._balances: dict[str, int] = {}
        self._nonces: dict[str, int] = {}

    def prefetch(self, addresses: list[str]) -> None:
        """Read the balance and next nonce of each address, 100 addresses per JSON-RPC batch."""
        for start in range(0, len(addresses), 100):
            chunk = [to_checksum_address(self.adapter.match_key(a)) for a in addresses[start : start + 100]]
            calls: list[tuple[str, list[object]]] = []
            for address in chunk:
                calls += [("eth_getBalance", [address, "latest"]), ("eth_getTransactionCount", [address, "pending"])]
            answers = self.adapter.node.batch(calls)
            for i, address in enumerate(chunk):
                self._balances[address.lower()] = int(answers[2 * i], 16)
                self._nonces[address.lower()] = int(answers[2 * i + 1], 16)

    def _balance(self, address: str) -> int:
        cached = self._balances.pop(address.lower(), None)
        return cached if cached is not None else int(self.adapter.balance(address))

    def terms(self) -> dict[str, int]:
        """The fee fields of new transactions, read once per run. :raises Wait: above the ceiling."""
        if self._terms is None:
            try:
                self._terms = chains_fees.evm_terms(self.adapter.fee_market())
            except chains_fees.FeeAboveCeiling as exc:
                raise Wait(exc.message) from None
        return self._terms

    def native_cost(self) -> int:
        """What a sweep of ether costs at most now, in wei: a plain transfer's gas x the max fee."""
        return NATIVE_GAS * chains_fees.per_gas(self.terms())

    def next_nonce(self, address: str) -> int:
        cached = self._nonces.pop(address.lower(), None)
        return cached if cached is not None else int(self.adapter.next_nonce(address))

    def lost(self, *, tx_hash: str, raw: str) -> bool:
        return False  # an EVM transaction is never lost for good: its nonce decides (NonceUsed)

    def native_sweep(self, job: SweepJob) -> Prepared | Skip:
        balance = self._balance(job.from_address)
        terms = self.terms()
        fee = self.native_cost()
        value = balance - fee
        if value < fee:
            return Skip(f"holds {balance} wei; sweeping it costs up to {fee} wei: left to grow")

        def build(nonce: int | None) -> UnsignedTx:
            return self.adapter.build_transfer(
                from_address=job.from_address,
                to_address=job.to_address,
                amount_base_units=value,
                nonce=nonce,
                gas_limit=NATIVE_GAS,
                **terms,
            )

        return Prepared(amount_base_units=value, build=build, terms={"gas_limit": NATIVE_GAS, **terms}, covered=True)

    def token_plan(self, job: SweepJob, tokens: int) -> TopUpPlan:
        data = SELECTOR_TRANSFER + self.adapter.match_key(job.to_address)[2:].rjust(64, "0") + format(tokens, "064x")
        try:
            estimate = self.adapter.estimate_gas(
                from_address=job.from_address, to_address=job.coin.contract_address, data=data
            )
        except RpcError as exc:
            raise Wait(f"the node cannot estimate the token transfer's gas: {exc.node_message[:200]}") from None
        gas_limit = with_margin(estimate, settings.ETH_GAS_LIMIT_MARGIN)
        terms = self.terms()
        needed = _up(Decimal(gas_limit * chains_fees.per_gas(terms)) * settings.SWEEP_TOPUP_MARGIN)
        held = self.adapter.balance(job.from_address)
        return TopUpPlan(
            gas_terms={"gas_limit": gas_limit, **terms},
            topup_base_units=max(needed - held, 0),
            needed_base_units=needed,
            held_base_units=held,
        )

    def topup(self, *, job: SweepJob, station: str, amount: int) -> Prepared:
        terms = self.terms()

        def build(nonce: int | None) -> UnsignedTx:
            return self.adapter.build_transfer(
                from_address=station,
                to_address=job.from_address,
                amount_base_units=amount,
                nonce=nonce,
                gas_limit=NATIVE_GAS,
                **terms,
            )

        return Prepared(amount_base_units=amount, build=build, terms=terms)

    def token_sweep(self, job: SweepJob, tokens: int) -> Prepared:
        """The token transfer with the gas limit the top-up was sized for, offering no more per gas
        than the address holds for. :raises Wait: the network wants more per gas than that now."""
        gas_limit = int(job.gas_limit or 0)
        held = self.adapter.balance(job.from_address)
        affordable = held // gas_limit if gas_limit else 0
        terms = dict(self.terms())
        market = self.adapter.fee_market()
        if "max_fee_per_gas" in terms:
            terms["max_fee_per_gas"] = min(terms["max_fee_per_gas"], affordable)
            terms["max_priority_fee_per_gas"] = min(terms["max_priority_fee_per_gas"], terms["max_fee_per_gas"])
            floor = (market.base_fee or 0) + terms["max_priority_fee_per_gas"]
            if terms["max_fee_per_gas"] < floor or terms["max_priority_fee_per_gas"] <= 0:
                raise Wait(f"the address holds {held} wei, {affordable} per gas; inclusion needs {floor} now")
        else:
            terms["gas_price"] = min(terms["gas_price"], affordable)
            if terms["gas_price"] < market.gas_price:
                raise Wait(f"the address holds {held} wei, {affordable} per gas; the node asks {market.gas_price}")

        def build(nonce: int | None) -> UnsignedTx:
            return self.adapter.build_transfer(
                from_address=job.from_address,
                to_address=job.to_address,
                amount_base_units=tokens,
                contract=job.coin.contract_address,
                nonce=nonce,
                gas_limit=gas_limit,
                **terms,
            )

        return Prepared(amount_base_units=tokens, build=build, terms={"gas_limit": gas_limit, **terms})

    def paid(self, *, job: SweepJob, status: TxStatus, amount: int) -> bool:
        """Whether a mined sweep moved what it should: ether by success, a token by its Transfer log."""
        if not status.success:
            return False
        if not job.coin.contract_address:
            return True
        key = self.adapter.match_key
        return any(
            t.contract == key(job.coin.contract_address)
            and t.from_address == key(job.from_address)
            and t.to_address == key(job.to_address)
            and t.amount_base_units == amount
            for t in status.transfers
        )


class TronOps:
    chain_id = "TRON"
    nonces = False

    def __init__(self, adapter: ChainAdapter) -> None:
        self.adapter: Any = adapter
        self._params: dict[str, int] | None = None

    def params(self) -> dict[str, int]:
        if self._params is None:
            self._params = self.adapter.chain_parameters()
        return self._params

    def native_cost(self) -> int:
        """What a sweep of TRX costs at most now (sun): the bandwidth of a transfer, if not free."""
        return 300 * self.params()["getTransactionFee"]

    def next_nonce(self, address: str) -> int:
        raise NotImplementedError("TRON has no nonces")

    def lost(self, *, tx_hash: str, raw: str) -> bool:
        """A TRON transaction past its expiry and in no solid block can never be included now."""
        from chains.base import SignedTx

        return bool(self.adapter.never_included(SignedTx(tx_hash=tx_hash, raw=raw), margin_ms=6_000))

    def _expiry(self) -> dict[str, int]:
        return {"expiration_ms": settings.WITHDRAW_TRON_EXPIRATION_SECONDS * 1000}

    def native_sweep(self, job: SweepJob) -> Prepared | Skip:
        balance = self.adapter.balance(job.from_address)
        if balance <= 0:
            return Skip("holds no TRX: nothing to sweep")
        probe = self.adapter.build_transfer(
            from_address=job.from_address, to_address=job.to_address, amount_base_units=balance, **self._expiry()
        )
        fee, _ = self.adapter.transfer_fee(probe)
        value = balance - fee
        if value < max(fee, 1):
            return Skip(f"holds {balance} sun; sweeping it costs {fee} sun: left to grow")

        def build(nonce: int | None) -> UnsignedTx:
            return self.adapter.build_transfer(
                from_address=job.from_address, to_address=job.to_address, amount_base_units=value, **self._expiry()
            )

        return Prepared(amount_base_units=value, build=build, terms={})

    def _energy_fee_limit(self, job: SweepJob, tokens: int) -> tuple[int, int]:
        energy = self.adapter.estimate_energy(
            owner=job.from_address,
            contract=job.coin.contract_address,
            to_address=job.to_address,
            amount_base_units=tokens,
        )
        if energy is None:
            raise Wait("the node cannot estimate the TRC20 transfer's energy (the call would fail now)")
        price = self.params()["getEnergyFee"]
        fee_limit = chains_fees.tron_energy_fee_limit(energy=energy, energy_price=price)
        if fee_limit > settings.TRON_FEE_LIMIT_SUN:
            raise Wait(f"the transfer needs a fee_limit of {fee_limit} sun, above TRON_FEE_LIMIT_SUN")
        return energy * price, fee_limit

    def _token_build(self, job: SweepJob, tokens: int, fee_limit: int) -> UnsignedTx:
        return self.adapter.build_transfer(
            from_address=job.from_address,
            to_address=job.to_address,
            amount_base_units=tokens,
            contract=job.coin.contract_address,
            fee_limit_sun=fee_limit,
            **self._expiry(),
        )

    def token_plan(self, job: SweepJob, tokens: int) -> TopUpPlan:
        energy_cost, fee_limit = self._energy_fee_limit(job, tokens)
        bandwidth, _ = self.adapter.transfer_fee(self._token_build(job, tokens, fee_limit))
        needed = max(fee_limit + bandwidth, _up(Decimal(energy_cost + bandwidth) * settings.SWEEP_TOPUP_MARGIN))
        held = self.adapter.balance(job.from_address)
        return TopUpPlan(
            gas_terms={"fee_limit": fee_limit},
            topup_base_units=max(needed - held, 0),
            needed_base_units=needed,
            held_base_units=held,
        )

    def topup(self, *, job: SweepJob, station: str, amount: int) -> Prepared:
        def build(nonce: int | None) -> UnsignedTx:
            return self.adapter.build_transfer(
                from_address=station, to_address=job.from_address, amount_base_units=amount, **self._expiry()
            )

        return Prepared(amount_base_units=amount, build=build, terms={})

    def token_sweep(self, job: SweepJob, tokens: int) -> Prepared:
        _, fee_limit = self._energy_fee_limit(job, tokens)
        fee_limit = min(fee_limit, int(job.fee_limit or fee_limit))

        def build(nonce: int | None) -> UnsignedTx:
            return self._token_build(job, tokens, fee_limit)

        return Prepared(amount_base_units=tokens, build=build, terms={"fee_limit": fee_limit})

    def paid(self, *, job: SweepJob, status: TxStatus, amount: int) -> bool:
        if not status.success:
            return False
        if not job.coin.contract_address:
            return True
        key = self.adapter.match_key
        return any(
            t.contract == key(job.coin.contract_address)
            and key(t.from_address) == key(job.from_address)
            and key(t.to_address) == key(job.to_address)
            and t.amount_base_units == amount
            for t in status.transfers
        )


def ops_for(chain_id: str, adapter: ChainAdapter) -> EvmOps | TronOps:
    return EvmOps(adapter) if chain_id == "ETH" else TronOps(adapter)
