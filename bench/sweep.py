"""
Sweep throughput: the planner over 100,000 deposit addresses (CPU and MariaDB only), and ETH sweeps
signed and broadcast on a local EVM dev node (ganache, started and stopped here).

    python bench/sweep.py [--rounds 3] [--addresses 100000] [--sweeps 200]

Prints one JSON object (medians of the rounds):
- sweep_plan_per_s: deposit addresses planned per second by sweeps_plan over --addresses addresses
  with one credited deposit each, every one past the threshold: a job created for each (target >= 20,000);
  BENCH_PROFILE=1 prints a cProfile of the cold planning (by own time) and of the sweep run on stderr;
- sweep_plan_steady_per_s: the same addresses looked at again once those jobs settled and a tenth of
  them got a new deposit (a job for that tenth): a beat tick once sweeping keeps up;
- raw_select_rows_per_s: THE DATABASE BASELINE: rows per second of a bare SELECT of those addresses'
  credited deposits (what the planner must read at least), measured in the same round;
- raw_insert_rows_per_s: THE INSERT BASELINE: rows per second of bare multi-row INSERTs of one job per
  address into sweep_job (same columns, indexes, 5,000 rows a transaction), the SQL built before the
  clock starts: what writing the jobs costs the database at least. Both it and the cold planning start
  after InnoDB purged the previous round's 100,000 deleted jobs;
- sweeps_per_s: ETH sweeps signed and broadcast per second by one sweeps_run over --sweeps funded
  deposit addresses, planning included (balances and nonces read in batched requests, nonces
  allocated, each key derived and each sweep signed by the vault's signer, the signed transactions
  stored, then their checks and eth_sendRawTransaction in batched requests of 50; target >= 100);
- raw_send_per_s: THE NODE BASELINE: bare eth_sendRawTransaction calls per second of pre-signed plain
  transfers, one HTTP request each, on the same node in the same round;
- raw_send_batch_per_s: the same transfers sent 50 to a JSON-RPC batch request, as the sweeps are.
The node's miner is paused while sending (as between a real chain's blocks), for the baselines too.
Every key here is a TEST-ONLY throwaway key of the local dev node.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import secrets
import sys
import time
from decimal import Decimal

from _django import median, setup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--sweeps", type=int, default=200)
    args = parser.parse_args()
    # TEST-ONLY key-encryption key of the bench database's throwaway seeds (kept between runs).
    os.environ["WALLET_KEK"] = "1:" + base64.b64encode(bytes(range(1, 33))).decode()
    os.environ["SWEEP_BATCH"] = str(max(args.sweeps * 2, 500))
    setup("bench_sweep")

    from django.db import connection

    plan = [plan_round(args.addresses) for _ in range(args.rounds)]
    node_figures = sweep_rounds(args.rounds, args.sweeps)
    connection.close()
    print(
        json.dumps(
            {
                "sweep_plan_per_s": round(median([p[0] for p in plan])),
                "sweep_plan_steady_per_s": round(median([p[1] for p in plan])),
                "raw_select_rows_per_s": round(median([p[2] for p in plan])),
                "raw_insert_rows_per_s": round(median([p[3] for p in plan])),
                "sweeps_per_s": round(median([f[0] for f in node_figures]), 1),
                "raw_send_per_s": round(median([f[1] for f in node_figures]), 1),
                "raw_send_batch_per_s": round(median([f[2] for f in node_figures]), 1),
                "addresses": args.addresses,
                "sweeps": args.sweeps,
                "rounds": args.rounds,
            }
        )
    )


def _planning_data(count: int) -> str:
    """count users with an ETH deposit address and one credited deposit each (created once, kept)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from addresses.models import AddressType, WalletAddress
    from recharges.models import RechargeRecord, RechargeStatus

    User = get_user_model()
    have = WalletAddress.objects.filter(
        chain_id="ETH", address_type=AddressType.USER_DEPOSIT, wallet_type="bench"
    ).count()
    if have < count:
        now = timezone.now()
        for start in range(have, count, 5000):
            size = min(5000, count - start)
            users = User.objects.bulk_create(
                [User(username=f"bench-sweep-{i}", password="!") for i in range(start, start + size)]
            )
            rows = WalletAddress.objects.bulk_create(
                [
                    WalletAddress(
                        coin_id="ETH",
                        coin_name="ETH",
                        chain_id="ETH",
                        address_type=AddressType.USER_DEPOSIT,
                        address="0x" + secrets.token_hex(20),
                        user=user,
                        wallet_type="bench",
                        assign_time=now,
                    )
                    for user in users
                ]
            )
            RechargeRecord.objects.bulk_create(
                [
                    RechargeRecord(
                        recharge_no=f"RB{row.address[2:30]}",
                        user=row.user,
                        coin_id="ETH",
                        coin_name="ETH",
                        tx_hash="0x" + secrets.token_hex(32),
                        to_address=row.address,
                        from_address="0x" + "11" * 20,
                        amount=Decimal("0.5"),
                        status=RechargeStatus.CONFIRMED,
                        confirmations=12,
                        block_number=1,
                    )
                    for row in rows
                ]
            )
    return "0x" + "22" * 20


def plan_round(count: int) -> tuple[float, float, float, float]:
    """(cold planning rate, steady planning rate, raw select rate, raw insert rate) of one round, per second.

    Cold: every address has unswept deposits past the threshold, a job is created for each. Steady:
    those jobs settled, a tenth of the addresses got a new deposit since: every address is looked at
    again, a job is created for the tenth (what a beat tick sees once sweeping keeps up).
    """
    from django.db import connection
    from django.utils import timezone

    from recharges.models import RechargeRecord, RechargeStatus
    from sweeps import planning
    from sweeps.models import SweepJob, SweepStatus

    target = _planning_data(count)
    # Only the planning data counts here: the node rounds' deposits (RN...) are set aside.
    RechargeRecord.objects.filter(recharge_no__startswith="RN").update(status=RechargeStatus.FAILED)
    RechargeRecord.objects.filter(recharge_no__startswith="RT").delete()
    RechargeRecord.objects.filter(recharge_no__startswith="RB").update(status=RechargeStatus.CONFIRMED)
    SweepJob.objects.filter(chain_id="ETH").delete()
    _purge_wait()
    inserted = _raw_insert_rate(target)
    _purge_wait()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_address, coin_id, amount FROM recharge_record WHERE coin_id = 'ETH' AND status = 2")
        rows = len(cursor.fetchall())
    raw = rows / (time.perf_counter() - started)
    cost = {"ETH": Decimal("0.001")}
    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    created = planning.sweeps_plan(chain_id="ETH", now=timezone.now(), cost=cost, to_address=target)
    cold = count / (time.perf_counter() - started)
    if profile is not None:
        profile.disable()
        print("--- sweeps_plan, cold", file=sys.stderr)
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    if created != count:
        sys.exit(f"planned {created} of {count} addresses")
    SweepJob.objects.filter(chain_id="ETH").update(status=SweepStatus.CONFIRMED, open_key=None)
    later = [
        RechargeRecord(
            recharge_no=f"RT{i:010d}", user_id=record.user_id, coin_id="ETH", coin_name="ETH",
            tx_hash="0x" + secrets.token_hex(32), to_address=record.to_address, from_address="0x" + "11" * 20,
            amount=Decimal("0.5"), status=RechargeStatus.CONFIRMED, confirmations=12, block_number=2,
        )
        for i, record in enumerate(RechargeRecord.objects.filter(recharge_no__startswith="RB").order_by("id")[::10])
    ]  # fmt: skip
    RechargeRecord.objects.bulk_create(later, batch_size=5000)
    started = time.perf_counter()
    created = planning.sweeps_plan(chain_id="ETH", now=timezone.now(), cost=cost, to_address=target)
    steady = count / (time.perf_counter() - started)
    if created != len(later):
        sys.exit(f"planned {created} of {len(later)} addresses with new deposits")
    SweepJob.objects.filter(chain_id="ETH").delete()
    return cold, steady, raw, inserted


def _purge_wait() -> None:
    """
    Wait (30 s at most) until InnoDB purged the rows just deleted: inserting 100,000 jobs under the
    unique keys of 100,000 rows deleted a second ago times the purge thread, not the insert (a
    planner meets a purged table). Both the bare insert and the planner start from there.
    """
    from django.db import connection

    for _ in range(300):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count FROM information_schema.innodb_metrics WHERE name = 'trx_rseg_history_len'")
            row = cursor.fetchone()
        if row is None or row[0] < 100:
            return
        time.sleep(0.1)


def _raw_insert_rate(target: str) -> float:
    """
    THE INSERT BASELINE: rows per second of bare multi-row INSERTs of one job per deposit address
    into sweep_job (same columns, indexes and chunks of 5,000 rows a transaction as the planner),
    their SQL text built before the clock starts; the rows are deleted again afterwards.
    """
    from django.db import connection, transaction

    from addresses.models import AddressType, WalletAddress
    from sweeps import planning
    from sweeps.models import SweepJob

    rows = list(
        WalletAddress.objects.filter(chain_id="ETH", address_type=AddressType.USER_DEPOSIT, user__isnull=False)
        .values_list("id", "address")
        .order_by("id")
    )
    stamp = f"'{_now_text()}'"
    statements = []
    for start in range(0, len(rows), planning.CHUNK):
        values = ", ".join(
            f"('R{start + i:031d}', 'ETH', 'ETH', {address_id}, '{address}', '{target}', 'PLANNED', '', 0.5, 0.5, "
            f"0, '', '', '', 0, 'ETH|{address}', {stamp}, {stamp})"
            for i, (address_id, address) in enumerate(rows[start : start + planning.CHUNK])
        )
        statements.append(f"INSERT INTO sweep_job ({', '.join(planning.JOB_COLUMNS)}) VALUES {values}")
    started = time.perf_counter()
    for statement in statements:
        with transaction.atomic(durable=True), connection.cursor() as cursor:
            cursor.execute(statement)
    rate = len(rows) / (time.perf_counter() - started)
    SweepJob.objects.filter(chain_id="ETH").delete()
    return rate


def _now_text() -> str:
    from django.db import connection
    from django.utils import timezone

    return str(connection.ops.adapt_datetimefield_value(timezone.now()))


def sweep_rounds(rounds: int, count: int) -> list[tuple[float, float, float]]:
    from django.contrib.auth import get_user_model
    from django.test import override_settings
    from django.utils import timezone

    from addresses import services as addresses_services
    from addresses import signer
    from addresses.models import AddressType, KeySecret
    from chains.devnodes import evm_start
    from chains.evm import EvmAdapter
    from recharges.models import RechargeRecord, RechargeStatus
    from sweeps import native_batch
    from sweeps import services as sweeps_services
    from sweeps.models import SweepJob, SweepStatus

    node = evm_start(accounts=4)
    figures = []
    try:
        adapter = EvmAdapter(url=node.url)
        for purpose in (AddressType.USER_DEPOSIT, AddressType.HOT):
            if not KeySecret.objects.filter(chain_id="ETH", purpose=purpose).exists():
                signer.hd_wallet_create(chain_id="ETH", purpose=purpose, mnemonic=signer.mnemonic_generate())
        from addresses import selectors as addresses_selectors

        hot = addresses_selectors.hot_addresses(chain_id="ETH", wallet_type="bench-hot").first()
        if hot is None:
            hot = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="bench-hot", count=1)[0]
        User = get_user_model()
        for round_no in range(rounds):
            # Each round sweeps its own new addresses: earlier deposits (and the planner's) set aside.
            RechargeRecord.objects.filter(status=RechargeStatus.CONFIRMED).update(status=RechargeStatus.FAILED)
            SweepJob.objects.filter(chain_id="ETH").delete()
            addresses_services.address_pool_fill(chain_id="ETH", count=count, pipelined=False)
            tag = secrets.token_hex(4)
            deposits = [
                addresses_services.deposit_address_assign(
                    user=User.objects.create(username=f"bench-node-{tag}-{i}", password="!"), coin_id="ETH"
                )
                for i in range(count)
            ]
            _fund(node, [row.address for row in deposits])
            RechargeRecord.objects.bulk_create(
                [
                    RechargeRecord(
                        recharge_no=f"RN{tag}{i:08d}",
                        user_id=row.user_id,
                        coin_id="ETH",
                        coin_name="ETH",
                        tx_hash="0x" + secrets.token_hex(32),
                        to_address=row.address,
                        from_address=node.accounts[1].address,
                        amount=Decimal("0.5"),
                        status=RechargeStatus.CONFIRMED,
                        confirmations=12,
                        block_number=1,
                    )
                    for i, row in enumerate(deposits)
                ]
            )
            # The miner paused while sending, as between a real chain's blocks: a broadcast returns once
            # the node checked the transaction (ganache's automine would time its miner, not the sender).
            node.w3.provider.make_request("miner_stop", [])
            try:
                raw = _raw_send_rate(node, count)
                # Its own sender: this ganache counts no unmined transaction in "pending" while paused.
                raw_batch = _raw_send_rate(node, count, batch=native_batch.CHUNK, sender=3, recipient=2)
                with override_settings(SWEEP_HOT_WALLET_TYPE="bench-hot"):
                    profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
                    started = time.perf_counter()
                    if profile is not None:
                        profile.enable()
                    run = sweeps_services.sweeps_run(chain_id="ETH", adapter=adapter, now=timezone.now())
                    elapsed = time.perf_counter() - started
                    if profile is not None:
                        profile.disable()
                        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)
            finally:
                node.w3.provider.make_request("miner_start", [])
            sent = SweepJob.objects.filter(status=SweepStatus.BROADCAST, to_address=hot.address).count()
            if sent < count:
                sys.exit(f"round {round_no}: {sent} of {count} sweeps broadcast: {run}")
            figures.append((count / elapsed, raw, raw_batch))
    finally:
        node.stop()
    return figures


def _fund(node, addresses: list[str]) -> None:
    """Half an ether to each address, sent without waiting, then wait until all are mined."""
    sender = node.accounts[1]
    nonce = node.w3.eth.get_transaction_count(sender.address, "pending")
    for i, address in enumerate(addresses):
        tx = {
            "to": address,
            "value": 5 * 10**17,
            "gas": 21_000,
            "gasPrice": 50 * 10**9,
            "nonce": nonce + i,
            "chainId": node.w3.eth.chain_id,
        }
        node.w3.eth.send_raw_transaction(sender.sign_transaction(tx).raw_transaction)
    for _ in range(60):
        if node.w3.eth.get_transaction_count(sender.address, "latest") == nonce + len(addresses):
            return
        time.sleep(0.5)
    mined = node.w3.eth.get_transaction_count(sender.address, "latest")
    sys.exit(f"funding not mined: {mined - nonce} of {len(addresses)} mined; {node.w3.eth.get_block('latest')}")


def _raw_send_rate(node, count: int, batch: int = 1, sender: int = 2, recipient: int = 3) -> float:
    """Bare eth_sendRawTransaction calls per second of pre-signed plain transfers (the node's baseline),
    one HTTP request each, or `batch` of them in one JSON-RPC batch request."""
    from chains.rpc import HttpNode

    to = node.accounts[recipient].address
    sender = node.accounts[sender]
    nonce = node.w3.eth.get_transaction_count(sender.address, "pending")
    price = node.w3.eth.gas_price * 2
    chain_id = node.w3.eth.chain_id
    raws = [
        "0x"
        + sender.sign_transaction(
            {
                "to": to,
                "value": 1,
                "gas": 21_000,
                "gasPrice": price,
                "nonce": nonce + i,
                "chainId": chain_id,
            }
        ).raw_transaction.hex()
        for i in range(count)
    ]
    rpc = HttpNode(node.url, name="bench", connect_timeout=2, read_timeout=30)
    started = time.perf_counter()
    if batch == 1:
        for raw in raws:
            rpc.call("eth_sendRawTransaction", [raw])
    else:
        for start in range(0, count, batch):
            answers = rpc.batch_results([("eth_sendRawTransaction", [raw]) for raw in raws[start : start + batch]])
            if not all(isinstance(a, str) for a in answers):
                sys.exit(f"the node refused a baseline transfer: {answers}")
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    main()
