"""Real concurrency and real crashes on MariaDB: two scanners at once, and kill -9 at every step."""

from __future__ import annotations

import dataclasses
import json
import threading
from decimal import Decimal

import pytest
from django.db import connection

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, OutboxMessage
from coins.models import CoinConfig
from recharges import services as recharges_services
from recharges.models import RechargeRecord, RechargeStatus
from recharges.tests.conftest import deposit_address, make_user
from recharges.tests.fakechain import FakeChain, transfer
from recharges.tests.helpers import available, tick
from wallet_project.testing import worker_run

pytestmark = [pytest.mark.mysql, pytest.mark.django_db(transaction=True)]

ONE_ETH = 10**18


@pytest.fixture
def eth_chain(settings):
    settings.SCAN_START_HEIGHTS = {"ETH": 0}
    CoinConfig.objects.filter(chain_id="ETH").update(required_confirmations=3)
    return FakeChain("ETH")


def test_two_scanners_at_once_credit_every_deposit_once(eth_chain, settings, now):
    settings.SCAN_BATCH_BLOCKS = 2  # many small batches: many chances to collide
    users = [make_user(f"racer{i}") for i in range(4)]
    addresses = [deposit_address(user=u, n=i + 1).address for i, u in enumerate(users)]
    for i in range(30):
        eth_chain.mine(
            [transfer(to=addresses[i % 4], amount=ONE_ETH), transfer(to=addresses[(i + 1) % 4], amount=ONE_ETH)]
        )
    eth_chain.mine(count=3)
    barrier = threading.Barrier(2)
    moved = []
    failures = []

    def scanner() -> None:
        try:
            barrier.wait()
            for _ in range(40):
                try:
                    result = recharges_services.deposits_scan_batch(chain_id="ETH", now=now, adapter=eth_chain)
                except recharges_services.CursorMoved:
                    moved.append(1)
                    continue
                confirmed = recharges_services.deposits_confirm(chain_id="ETH", now=now, adapter=eth_chain)
                if result.caught_up and confirmed.waiting == 0 and confirmed.credited == 0:
                    break
        except Exception as exc:  # surfaced by the assertion below
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=scanner) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert RechargeRecord.objects.count() == 60
    assert RechargeRecord.objects.filter(status=RechargeStatus.CONFIRMED).count() == 60
    assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 60
    assert OutboxMessage.objects.filter(tags="WALLET_RECHARGE").count() == 60
    assert [available(u, "ETH") for u in users] == [Decimal(15), Decimal(16), Decimal(15), Decimal(14)]
    assert assets_selectors.ledger_mismatches() == []


KILL_STEPS = [
    "scan.fetched",
    "scan.cursor_set",
    "scan.block_written",
    "confirm.checked",
    "settle.locked",
    "settle.credited",
    "settle.written",
    "reorg.fork_found",
    "reorg.written",
]


@pytest.mark.parametrize("step", KILL_STEPS)
def test_a_worker_killed_with_sigkill_at_any_step_then_restarted_credits_exactly_once(
    eth_chain, user, now, step, tmp_path
):
    address = deposit_address(user=user).address
    eth_chain.mine([transfer(to=address, amount=ONE_ETH)])
    eth_chain.mine(count=2)
    tick(eth_chain, now)  # credited
    eth_chain.mine([transfer(to=address, amount=2 * ONE_ETH)])
    tick(eth_chain, now)  # pending, then orphaned below
    eth_chain.reorg(depth=1, branch=[[], []])
    eth_chain.mine([transfer(to=address, amount=4 * ONE_ETH)], count=4)
    spec = {
        "chain_id": "ETH",
        "blocks": [
            {**dataclasses.asdict(b), "transfers": [dataclasses.asdict(t) for t in b.transfers]}
            for b in eth_chain.mined
        ],
    }
    chain_file = tmp_path / "chain.json"
    chain_file.write_text(json.dumps(spec))
    worker = worker_run("recharges.tests.scan_worker", str(chain_file), step, timeout=60)
    assert worker.returncode == -9, worker.stderr.decode()[-2000:]  # it really died at that step
    for _ in range(3):  # the restarted worker
        tick(eth_chain, now)

    assert available(user, "ETH") == Decimal(5)  # 1 + 4; the 2 was orphaned
    assert Flow.objects.filter(business_type=BusinessType.RECHARGE).count() == 2
    assert OutboxMessage.objects.filter(tags="WALLET_RECHARGE").count() == 2
    assert RechargeRecord.objects.filter(status=RechargeStatus.REORGED).count() == 1
    assert assets_selectors.ledger_mismatches() == []
