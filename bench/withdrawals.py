"""
Withdrawal payouts and apply latency, on MariaDB with ganache and bcoin regtest started here.

    python bench/withdrawals.py [--rounds 3] [--evm 200] [--btc 60] [--users 50] [--seconds 20] [--evm-only]

BENCH_PROFILE=1 prints a cProfile of each ETH payout round on stderr; BENCH_DATABASE names the
bench's database (bench_withdrawals), BENCH_REDIS_URL its Redis.

Prints one JSON object (rates are medians of the rounds):
- withdrawals_per_s: approved ETH withdrawals (plain ether to fresh addresses without code) signed
  and broadcast per second by withdrawals_pay, WITHDRAW_PAY_BATCH = --evm, one run per round, in
  groups of WITHDRAW_EVM_SIGN_GROUP (50) per database transaction (withdrawals/payout/evm_group.py:
  rows locked, holds / switches / breaker / risk rules checked, hot addresses picked and nonces
  allocated once per group; each transfer built with the run's fee terms, checked against the run's
  account of the hot address and signed; the rows written once per table and committed); then sent
  in JSON-RPC batches of WITHDRAW_EVM_SEND_BATCH; the node is read once per hot address and run,
  see withdrawals/payout/evm_run.py). Ganache's miner is paused while
  paying, as between a real chain's blocks (a send returns once the node checked the transaction;
  its instamine would time its miner, not the payer); then it mines, and every payout of the round
  must be mined and completed by withdrawals_confirm or the bench stops. nonce_gaps: nonces of the
  hot address skipped or used twice over all rounds (must be 0);
- raw_send_per_s: THE NODE BASELINE, measured in each round before its payouts, on the same node
  with its miner paused the same way: pre-signed plain transfers sent by bare
  eth_sendRawTransaction, one request each; raw_send_batch_per_s: the same in JSON-RPC batches of
  send_batch (WITHDRAW_EVM_SEND_BATCH, as the payout run sends), with the ratios
  withdrawals_vs_raw_send and withdrawals_vs_raw_send_batch;
- raw_sign_per_s: eth_account signatures per second of the same kind of transaction (no database,
  no vault);
- btc_withdrawals_per_s: approved BTC withdrawals paid per second one per transaction (UTXO
  selection and lock, change address, signer, stored, sendrawtransaction + mempool check), and
  btc_batched_withdrawals_per_s with batches of WITHDRAW_BTC_BATCH_MAX (20);
- apply_p50_ms / apply_p99_ms: POST /api/v1/wallet/withdrawals under --users concurrent users
  (gunicorn on this database, each user its own JWT, one request after another, pausing
  --think-seconds on average between them: 0 by default, the machine's saturation point), with
  apply_errors and, as the baseline under the same load, the health endpoint's p50/p99.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import json
import os
import pstats
import random
import secrets
import statistics
import subprocess
import sys
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path

from _django import ROOT, median, setup

VENV_BIN = Path(sys.executable).parent
DATABASE = os.environ.get("BENCH_DATABASE", "bench_withdrawals")
ONE_ETH = 10**18


def _database_drop() -> None:
    import dj_database_url
    import MySQLdb

    cfg = dj_database_url.parse(os.environ.get("BENCH_MYSQL_URL", "mysql://root:@127.0.0.1:3306") + "/x")
    admin = MySQLdb.connect(host=cfg["HOST"], port=int(cfg["PORT"] or 3306), user=cfg["USER"], passwd=cfg["PASSWORD"])
    admin.cursor().execute(f"DROP DATABASE IF EXISTS `{DATABASE}`")
    admin.close()


def _users(count: int, coin_ids: list[str]) -> list:
    from django.contrib.auth import get_user_model

    from assets import services as assets_services
    from assets.models import BusinessType
    from coins.models import CoinConfig

    User = get_user_model()
    users = [User.objects.create_user(f"bench-withdraw-{i}") for i in range(count)]
    for coin in CoinConfig.objects.filter(coin_id__in=coin_ids):
        for user in users:
            assets_services.balance_credit(
                user_id=user.id,
                coin=coin,
                amount=Decimal(1000),
                business_type=BusinessType.RECHARGE,
                biz_ref=f"bench-{coin.coin_id}-{user.id}",
            )
    return users


def _approved(users: list, coin_id: str, count: int, amount: str, to: list[str], tag: str) -> None:
    from withdrawals import services as withdrawals_services

    for n in range(count):
        withdrawals_services.withdrawal_apply(
            user_id=users[n % len(users)].id,
            coin_id=coin_id,
            to_address=to[n % len(to)],
            amount=amount,
            idempotency_key=f"{tag}-{n}",
        )


def _pay_all(chain_id: str) -> tuple[int, float]:
    """Run withdrawals_pay until nothing approved is left; (withdrawals signed, seconds)."""
    from withdrawals import payout as withdrawals_payout
    from withdrawals.models import WithdrawRecord, WithdrawStatus

    signed, started = 0, time.perf_counter()
    while True:
        result = withdrawals_payout.withdrawals_pay(chain_id=chain_id)
        signed += result.signed
        if result.error or result.signed == 0:
            break
    elapsed = time.perf_counter() - started
    left = WithdrawRecord.objects.filter(status=WithdrawStatus.APPROVED, coin__chain_id=chain_id).count()
    if left:
        raise RuntimeError(f"{left} {chain_id} withdrawals left unpaid: {result}")
    return signed, elapsed


def _nonce_gaps(adapter, hot: str) -> int:
    from withdrawals.models import Payout

    nonces = sorted(Payout.objects.filter(chain_id="ETH", from_address=hot).values_list("nonce", flat=True))
    expected = set(range(adapter.next_nonce(hot)))
    return len(expected - set(nonces)) + len(set(nonces) - expected)


def _evm_round(node, users, hot: str, count: int, tag: str) -> float:
    """Pay count approved ETH withdrawals with the miner paused (timed), then mine and settle every one."""
    from django.utils import timezone
    from eth_account import Account

    from chains import registry as chains_registry
    from withdrawals import payout as withdrawals_payout
    from withdrawals.models import WithdrawRecord, WithdrawStatus

    _approved(users, "ETH", count, "0.02", [Account.create().address for _ in range(10)], tag)  # TEST-ONLY
    # The miner paused while paying, as between a real chain's blocks: a broadcast returns once the
    # node checked the transaction (ganache's instamine would time its miner, not the payer).
    node.w3.provider.make_request("miner_stop", [])
    try:
        profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
        if profile is not None:
            profile.enable()
        signed, elapsed = _pay_all("ETH")
        if profile is not None:
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(60)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    finally:
        node.w3.provider.make_request("miner_start", [])
    # Every payout must be mined and complete: a broadcast that the node dropped would not count.
    adapter = chains_registry.adapter_for("ETH")
    for _ in range(100):
        if adapter.mined_count(hot) == adapter.next_nonce(hot):
            break
        node.mine(1)
    node.mine(12)
    for _ in range(5):
        withdrawals_payout.withdrawals_confirm(chain_id="ETH", now=timezone.now())
        open_count = WithdrawRecord.objects.filter(coin_id="ETH", status=WithdrawStatus.PROCESSING).count()
        if not open_count:
            break
    if open_count or signed != count:
        raise RuntimeError(f"{tag}: {signed} of {count} signed, {open_count} not completed")
    return signed / elapsed


def _raw_sign_per_s(seconds: float = 2.0) -> float:
    from eth_account import Account

    account = Account.create()  # TEST-ONLY throwaway key
    tx = {"to": account.address, "value": 1, "gas": 21000, "gasPrice": 10**9, "nonce": 0, "chainId": 1337}
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        tx["nonce"] = done
        Account.sign_transaction(tx, account.key)
        done += 1
    return done / (time.perf_counter() - started)


def _raw_send_per_s(node, count: int, batch: int = 1) -> float:
    """Pre-signed plain transfers sent with the miner paused, one request each (batch 1) or in
    JSON-RPC batches of `batch`; then mined, so that the next round starts from an empty pool."""
    from chains.rpc import HttpNode

    sender = node.accounts[1]
    rpc = HttpNode(node.url, name="bench", connect_timeout=2, read_timeout=30)
    start_nonce = int(rpc.call("eth_getTransactionCount", [sender.address, "pending"]), 16)
    raws = [
        "0x"
        + bytes(
            sender.sign_transaction(
                {
                    "to": node.accounts[2].address,
                    "value": 1,
                    "gas": 21000,
                    "gasPrice": 10 * 10**9,
                    "nonce": start_nonce + n,
                    "chainId": 1337,
                }
            ).raw_transaction
        ).hex()
        for n in range(count)
    ]
    rpc.call("miner_stop")
    try:
        started = time.perf_counter()
        if batch == 1:
            for raw in raws:
                rpc.call("eth_sendRawTransaction", [raw])
        else:
            for start in range(0, count, batch):
                rpc.batch([("eth_sendRawTransaction", [raw]) for raw in raws[start : start + batch]])
        elapsed = time.perf_counter() - started
    finally:
        rpc.call("miner_start")
    for _ in range(100):
        if int(rpc.call("eth_getTransactionCount", [sender.address, "latest"]), 16) == start_nonce + count:
            break
        rpc.call("evm_mine")
    else:
        raise RuntimeError("the baseline's transfers were not mined")
    return count / elapsed


def _btc_round(node, adapter, users, hot: str, count: int, batch: int, tag: str, coinbase: int) -> float:
    from django.conf import settings
    from django.utils import timezone

    from chains.codecs import segwit_encode
    from chains.testing import btc_coinbase_utxo, btc_new_key, btc_sign
    from recharges import services as recharges_services

    # One funding transaction with an output per payout: each payout then has a confirmed UTXO.
    outputs = [(hot, 2_000_000)] * count
    unsigned = adapter.build_transfer(
        from_address=node.miner_address,
        to_address=hot,
        amount_base_units=2_000_000,
        outputs=outputs[1:],
        utxos=[btc_coinbase_utxo(node, coinbase)],
        fee_rate_sat_vb=3,
    )
    adapter.broadcast_irreversible(btc_sign(unsigned, node.miner_private_key))
    node.mine(1)
    for _ in range(50):
        scanned = recharges_services.deposits_scan_batch(chain_id="BTC", now=timezone.now(), adapter=adapter)
        if scanned.error or scanned.caught_up:
            break
    to = [segwit_encode("rb", 0, bytes.fromhex(btc_new_key()[1][4:])) for _ in range(10)]  # TEST-ONLY keys
    _approved(users, "BTC", count, "0.01", to, tag)
    settings.WITHDRAW_BTC_BATCH_MAX = batch
    signed, elapsed = _pay_all("BTC")
    node.mine(1)
    return signed / elapsed


def _apply_latency(users, *, concurrency: int, seconds: float, think: float) -> dict:
    import requests
    from eth_account import Account
    from rest_framework_simplejwt.tokens import AccessToken

    from chains.devnodes import free_port

    port = free_port()
    host = f"http://127.0.0.1:{port}"
    server_env = {**os.environ, "DJANGO_DEBUG": "false", "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), "wallet_project.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "3",
         "--threads", "4", "--worker-class", "gthread", "--keep-alive", "75"],
        cwd=ROOT, env=server_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    tokens = [str(AccessToken.for_user(u)) for u in users[:concurrency]]
    destinations = [Account.create().address for _ in range(concurrency)]  # TEST-ONLY
    try:
        deadline = time.time() + 60
        while True:
            try:
                if requests.get(f"{host}/api/v1/wallet/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.time() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.5)

        def load(kind: str) -> tuple[list[float], int]:
            latencies: list[float] = []
            errors = [0]
            lock = threading.Lock()
            stop_at = time.perf_counter() + seconds

            def user(index: int) -> None:
                pause = random.Random(index)
                session = requests.Session()
                session.headers["Authorization"] = f"Bearer {tokens[index]}"
                while time.perf_counter() < stop_at:
                    started = time.perf_counter()
                    if kind == "apply":
                        response = session.post(
                            f"{host}/api/v1/wallet/withdrawals",
                            json={
                                "coin": "ETH",
                                "to_address": destinations[index],
                                "amount": "0.01",
                                "idempotency_key": uuid.uuid4().hex,
                            },
                            timeout=30,
                        )
                        ok = response.status_code == 201
                    else:
                        ok = session.get(f"{host}/api/v1/wallet/health", timeout=30).status_code == 200
                    took = (time.perf_counter() - started) * 1000
                    with lock:
                        latencies.append(took)
                        errors[0] += 0 if ok else 1
                    if think:
                        time.sleep(pause.uniform(think / 2, think * 1.5))

            threads = [threading.Thread(target=user, args=(i,)) for i in range(concurrency)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return latencies, errors[0]

        baseline, _ = load("health")
        applied, errors = load("apply")
    finally:
        server.terminate()
        server.wait(timeout=30)

    def pct(values: list[float], q: int) -> float:
        return round(statistics.quantiles(values, n=100)[q - 1], 1) if len(values) > 1 else 0.0

    return {
        "apply_p50_ms": pct(applied, 50),
        "apply_p99_ms": pct(applied, 99),
        "apply_requests": len(applied),
        "apply_errors": errors,
        "apply_per_s": round(len(applied) / seconds, 1),
        "baseline_health_p50_ms": pct(baseline, 50),
        "baseline_health_p99_ms": pct(baseline, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--evm", type=int, default=200, help="ETH withdrawals per round")
    parser.add_argument("--btc", type=int, default=60, help="BTC withdrawals per round")
    parser.add_argument("--users", type=int, default=50, help="concurrent users of the apply load")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of apply load")
    parser.add_argument(
        "--think-seconds", type=float, default=0.0, help="mean pause of a user between requests (0: back to back)"
    )
    parser.add_argument("--evm-only", action="store_true", help="only the ETH payouts and their baselines")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from chains.devnodes import btc_start, evm_start

    evm, btc = evm_start(), btc_start()
    try:
        # A fresh database and a BENCH-ONLY key-encryption key every run: the vault starts empty.
        os.environ.update(
            {
                "ETH_RPC_URL": evm.url,
                "BTC_RPC_URL": btc.url,
                "BTC_NETWORK": "regtest",
                "BTC_REGTEST_HRP": "rb",
                "BTC_FEE_FALLBACK_SAT_VB": "2",
                "WALLET_KEK": "1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
                "WALLET_KEK_FILE": "",
                "WITHDRAW_PAY_BATCH": str(max(args.evm, args.btc)),
                "WITHDRAW_BTC_BATCH_WAIT_SECONDS": "0",
                "SCAN_START_HEIGHTS": f"BTC:{btc.rpc('getblockcount') + 1}",
                "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"),
                "JWT_ACCESS_MINUTES": "240",
                # Hundreds of withdrawals per user and hour: the velocity rule would send them to review.
                "RISK_VELOCITY_MAX_COUNT": "0",
                "RISK_HOT_SHARE_MAX": "0",
            }
        )
        _database_drop()
        setup(DATABASE)
        result = _run(args, evm, btc)
    finally:
        evm.stop()
        btc.stop()
    print(json.dumps(result))


def _run(args: argparse.Namespace, evm, btc) -> dict:
    from addresses import services as addresses_services
    from addresses import signer
    from addresses.models import AddressType
    from chains import registry as chains_registry
    from coins.models import CoinConfig

    CoinConfig.objects.filter(chain_id__in=["ETH", "BTC"]).update(
        withdraw_audit_threshold=Decimal(10**6),
        withdraw_dual_audit_threshold=Decimal(10**7),
        risk_first_address_amount=Decimal(10**6),
        risk_velocity_amount=Decimal(10**6),
        withdraw_daily_limit=Decimal(10**7),
    )
    for chain_id in ("ETH", "BTC"):
        signer.hd_wallet_create(
            chain_id=chain_id, purpose=AddressType.HOT, mnemonic=signer.mnemonic_generate(), label="bench-only"
        )
    (eth_hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw")
    (btc_hot,) = addresses_services.hot_addresses_create(chain_id="BTC", wallet_type="withdraw")
    evm.send_tx({"to": eth_hot.address, "value": 900 * ONE_ETH})
    users = _users(max(args.users, 10), ["ETH", "BTC"])
    eth_adapter, btc_adapter = chains_registry.adapter_for("ETH"), chains_registry.adapter_for("BTC")

    from django.conf import settings

    # Per round, the node's baselines first (one request per transaction, then batches of the size
    # the payout run sends), then the payout round itself: all three on the same node, same load.
    send_batch = settings.WITHDRAW_EVM_SEND_BATCH
    send_rates, batch_rates, evm_rates = [], [], []
    for r in range(args.rounds):
        send_rates.append(_raw_send_per_s(evm, args.evm))
        batch_rates.append(_raw_send_per_s(evm, args.evm, batch=send_batch))
        evm_rates.append(_evm_round(evm, users, eth_hot.address, args.evm, f"evm-{r}"))
    print(f"evm rounds: {evm_rates} raw: {send_rates} raw batched: {batch_rates}", file=sys.stderr)
    gaps = _nonce_gaps(eth_adapter, eth_hot.address)
    sign_rates = [_raw_sign_per_s() for _ in range(args.rounds)]
    evm = {
        "withdrawals_per_s": round(median(evm_rates), 1),
        "nonce_gaps": gaps,
        "raw_sign_per_s": round(median(sign_rates), 1),
        "raw_send_per_s": round(median(send_rates), 1),
        "raw_send_batch_per_s": round(median(batch_rates), 1),
        "send_batch": send_batch,
        "withdrawals_vs_raw_send": round(median(evm_rates) / median(send_rates), 3),
        "withdrawals_vs_raw_send_batch": round(median(evm_rates) / median(batch_rates), 3),
    }
    if args.evm_only:
        return {**evm, "rounds": args.rounds, "evm_per_round": args.evm}
    btc_rates = [
        _btc_round(btc, btc_adapter, users, btc_hot.address, args.btc, 1, f"btc-{r}", coinbase=r + 1)
        for r in range(args.rounds)
    ]
    batched = [
        _btc_round(btc, btc_adapter, users, btc_hot.address, args.btc, 20, f"btcb-{r}", coinbase=args.rounds + r + 1)
        for r in range(args.rounds)
    ]
    latency = _apply_latency(users, concurrency=args.users, seconds=args.seconds, think=args.think_seconds)
    return {
        **evm,
        "btc_withdrawals_per_s": round(median(btc_rates), 1),
        "btc_batched_withdrawals_per_s": round(median(batched), 1),
        **latency,
        "rounds": args.rounds,
        "evm_per_round": args.evm,
        "btc_per_round": args.btc,
        "users": args.users,
        "think_seconds": args.think_seconds,
        "targets": {"withdrawals_per_s": 200, "nonce_gaps": 0},
    }


if __name__ == "__main__":
    main()
