"""
Ledger throughput on MariaDB, against the raw single-row-update transaction rate of the same server.

    python bench/ledger.py [--rounds 5] [--seconds 3]

Prints one JSON object: credit_per_s (one balance_credit per transaction, each locking the balance
and writing it, a flow and an outbox event: BEGIN, one SELECT ... FOR UPDATE, the three writes in
one multi-statement round trip, COMMIT), raw_txn_per_s (BEGIN; UPDATE one row; COMMIT on the same server
through the bare driver), credit_ratio, raw_implicit_txn_per_s (UPDATE; COMMIT with autocommit
off, one round trip fewer) and the ratio to it, django_txn_per_s (the same UPDATE inside this
service's own transaction.atomic) and the ratio to it, batched_credit_per_s (500 credits to 500
users per transaction through balance_credit_batch), medians of the rounds.
"""

from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal

from _django import median, setup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    setup("bench_ledger")

    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from assets import services as assets_services
    from assets.models import Balance, BusinessType, Flow, OutboxMessage
    from coins.models import CoinConfig

    Flow.objects.all().delete()
    OutboxMessage.objects.all().delete()
    Balance.objects.all().delete()
    User = get_user_model()
    user, _ = User.objects.get_or_create(username="bench-ledger")
    User.objects.bulk_create([User(username=f"bench-ledger-{i}") for i in range(500)], ignore_conflicts=True)
    users = list(User.objects.filter(username__startswith="bench-ledger-").order_by("id"))
    btc = CoinConfig.objects.get(coin_id="BTC")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_raw (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE=InnoDB")
        cursor.execute("INSERT IGNORE INTO bench_raw VALUES (1, 0)")
    counter = iter(range(10**9))

    def raw_round(*, explicit_begin: bool) -> float:
        # The driver's connection, no Django in between. explicit_begin: BEGIN; UPDATE; COMMIT on
        # an autocommit connection, the shape of every application transaction on a pooled
        # connection. Otherwise: UPDATE; COMMIT with autocommit off (an implicit transaction).
        connection.ensure_connection()
        raw = connection.connection
        raw.autocommit(explicit_begin)
        cursor = raw.cursor()
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            if explicit_begin:
                cursor.execute("BEGIN")
            cursor.execute("UPDATE bench_raw SET v = v + 1 WHERE id = 1")
            raw.commit()
            done += 1
        elapsed = time.perf_counter() - started
        cursor.close()
        raw.autocommit(True)
        return done / elapsed

    def django_txn_round() -> float:
        # The same one-row UPDATE as a transaction of this service: Django's atomic block on the
        # pooled connection, opened with BEGIN by wallet_project.db_backends.mysql.
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            with transaction.atomic(durable=True), connection.cursor() as cursor:
                cursor.execute("UPDATE bench_raw SET v = v + 1 WHERE id = 1")
            done += 1
        return done / (time.perf_counter() - started)

    def credit_round() -> float:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            with transaction.atomic(durable=True):
                assets_services.balance_credit(
                    user_id=user.id,
                    coin=btc,
                    amount=Decimal("0.00000001"),
                    business_type=BusinessType.RECHARGE,
                    biz_ref=f"c{next(counter)}",
                )
            done += 1
        return done / (time.perf_counter() - started)

    def batched_round() -> float:
        # 500 deposits of 500 different users per transaction, as the confirmation job credits them.
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < args.seconds:
            credits = [
                assets_services.Credit(user_id=users[i].id, amount=Decimal("0.00000001"), biz_ref=f"c{next(counter)}")
                for i in range(500)
            ]
            with transaction.atomic(durable=True):
                assets_services.balance_credit_batch(coin=btc, business_type=BusinessType.RECHARGE, credits=credits)
            done += 500
        return done / (time.perf_counter() - started)

    raw, raw_implicit, raw_django, single, batched = [], [], [], [], []
    for _ in range(args.rounds):  # interleaved, so machine noise hits all of them alike
        raw.append(raw_round(explicit_begin=True))
        raw_implicit.append(raw_round(explicit_begin=False))
        raw_django.append(django_txn_round())
        single.append(credit_round())
        batched.append(batched_round())

    from assets import selectors as assets_selectors

    result = {
        "credit_per_s": round(median(single), 1),
        "raw_txn_per_s": round(median(raw), 1),
        "credit_ratio": round(median(single) / median(raw), 3),
        "raw_implicit_txn_per_s": round(median(raw_implicit), 1),
        "credit_ratio_to_implicit": round(median(single) / median(raw_implicit), 3),
        "django_txn_per_s": round(median(raw_django), 1),
        "credit_ratio_to_django_txn": round(median(single) / median(raw_django), 3),
        "batched_credit_per_s": round(median(batched), 1),
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "ledger_consistent": assets_selectors.ledger_mismatches() == [],
        "targets": {"credit_ratio": 0.35, "batched_credit_per_s": 2000},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
