"""
Randomized reorgs: many rounds of mining, reorgs of random depth (some deeper than the
confirmations, so credited deposits get reversed), transactions re-mined on the new branch
(sometimes under another log index), and scanner ticks at random moments.

Whatever happened, the end state must be: the ledger holds exactly the deposits of the
canonical chain, each credited once, nothing lost, the journal consistent with the balances.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from decimal import Decimal

import pytest

from assets import selectors as assets_selectors
from assets.models import Balance
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address, make_user
from recharges.tests.fakechain import USDT_ERC20, transfer
from recharges.tests.helpers import net_recharged, tick

CONFIRMATIONS = 3


def _random_transfer(rng: random.Random, addresses: list[str]):
    to = rng.choice(addresses)
    # Amounts exact in binary floating point: SQLite checks the ledger's constraints in floats.
    if rng.random() < 0.5:
        return transfer(to=to, amount=rng.randint(1, 64) * 125 * 10**15)
    return transfer(to=to, amount=rng.randint(1, 5000) * 10**6, index=rng.randint(0, 50), contract=USDT_ERC20)


@pytest.mark.parametrize("seed", range(20))
def test_ledger_equals_the_canonical_chain_after_random_reorgs(chain, now, seed):
    rng = random.Random(seed)
    users = [make_user(f"u{seed}x{i}") for i in range(3)]
    addresses = [deposit_address(user=u, n=i + 1).address for i, u in enumerate(users)]
    owner = {a: u for a, u in zip(addresses, users, strict=True)}
    orphaned_pool = []

    for _ in range(40):
        action = rng.random()
        if action < 0.55:
            canonical_txs = {t.tx_hash for b in chain.mined for t in b.transfers}
            transfers = [_random_transfer(rng, addresses) for _ in range(rng.randint(0, 3))]
            for old in rng.sample(orphaned_pool, k=min(len(orphaned_pool), rng.randint(0, 1))):
                if old.tx_hash not in canonical_txs and old.tx_hash not in {t.tx_hash for t in transfers}:
                    # Re-mined; a token transfer may land under another log index.
                    transfers.append(replace(old, index=rng.randint(0, 50)) if old.contract else old)
            chain.mine(transfers)
        elif action < 0.75 and len(chain.mined) > 2:
            depth = rng.randint(1, min(len(chain.mined) - 1, 7))
            dropped = chain.mined[-depth:]
            chain.reorg(depth=depth, branch=[[] for _ in range(rng.randint(max(depth - 1, 0), depth + 2))])
            orphaned_pool.extend(t for b in dropped for t in b.transfers)
        else:
            tick(chain, now)

    chain.mine(count=CONFIRMATIONS + 1)
    tick(chain, now)
    tick(chain, now)

    canonical = {(t.tx_hash, t.index): (t, b.hash) for b in chain.mined for t in b.transfers}
    expected: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for t, _block_hash in canonical.values():
        coin_id = "USDT-ERC20" if t.contract else "ETH"
        expected[(owner[t.to_address].id, coin_id)] += Decimal(t.amount_base_units).scaleb(-6 if t.contract else -18)
    for user in users:
        for coin_id in ("ETH", "USDT-ERC20"):
            balance = Balance.objects.filter(user=user, coin_id=coin_id).first()
            held = (balance.available, balance.frozen) if balance else (Decimal(0), Decimal(0))
            assert held == (expected[(user.id, coin_id)], Decimal(0)), (seed, user.id, coin_id)
            assert net_recharged(user, coin_id) == expected[(user.id, coin_id)]
    for record in RechargeRecord.objects.all():
        key = (record.tx_hash, record.log_index)
        if key in canonical:
            assert record.status == RechargeStatus.CONFIRMED
            assert record.block_hash == canonical[key][1]
        else:
            assert record.status == RechargeStatus.REORGED
    found = {(r.tx_hash, r.log_index) for r in RechargeRecord.objects.all()}
    assert set(canonical) <= found  # no lost deposit
    assert assets_selectors.ledger_mismatches() == []
