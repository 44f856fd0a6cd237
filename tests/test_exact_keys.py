"""Idempotency keys and business numbers compare exactly: "ABC" is not "abc", whatever the database's collation."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.apps import apps
from django.db import connection, models, transaction
from eth_utils import to_checksum_address

from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow
from coins.models import CoinConfig
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord

pytestmark = [pytest.mark.mysql, pytest.mark.django_db]

OUTSIDE = to_checksum_address("0x" + "5e" * 20)
APPS = ("coins", "chains", "addresses", "recharges", "withdrawals", "assets", "monitoring")
# Columns that hold a key something is found or deduplicated by, beside the *_no business numbers.
KEY_NAMES = {"idempotency_key", "biz_ref", "message_id", "keys", "open_key"}


def key_columns() -> list[tuple[str, str]]:
    """(table, column) of every idempotency key and business number in the project's models."""
    found = []
    for app in APPS:
        for model in apps.get_app_config(app).get_models():
            for field in model._meta.get_fields():
                if isinstance(field, models.CharField) and (field.name in KEY_NAMES or field.name.endswith("_no")):
                    found.append((model._meta.db_table, field.column))
    return sorted(found)


def apply(user, key: str, amount: str = "1") -> WithdrawRecord:
    return withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id="ETH", to_address=OUTSIDE, amount=amount, idempotency_key=key
    )


class TestCollation:
    def test_every_key_column_compares_byte_for_byte(self):
        columns = key_columns()
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE()"
            )
            collation = {(table, column): name for table, column, name in cursor.fetchall()}

        assert {("withdraw_record", "idempotency_key"), ("asset_flow", "biz_ref")} <= set(columns)
        assert len(columns) >= 10, columns
        assert {column: collation[column] for column in columns} == dict.fromkeys(columns, "utf8mb4_bin")


class TestIdempotencyKeys:
    def test_keys_differing_only_in_case_are_two_withdrawals(self, user):
        assets_services.balance_credit(
            user_id=user.id,
            coin=CoinConfig.objects.get(coin_id="ETH"),
            amount=Decimal(10),
            business_type=BusinessType.RECHARGE,
            biz_ref="fund",
        )

        lower = apply(user, "abc")
        upper = apply(user, "ABC")
        again = apply(user, "abc")

        assert lower.pk != upper.pk
        assert again.pk == lower.pk
        assert WithdrawRecord.objects.count() == 2
        assert Balance.objects.get(user=user, coin_id="ETH").frozen == Decimal(2)

    def test_business_references_differing_only_in_case_are_two_postings(self, user):
        eth = CoinConfig.objects.get(coin_id="ETH")

        for ref in ("tx-a", "TX-A", "tx-a"):
            with transaction.atomic():
                assets_services.balance_credit(
                    user_id=user.id, coin=eth, amount=Decimal(1), business_type=BusinessType.RECHARGE, biz_ref=ref
                )

        assert sorted(Flow.objects.values_list("biz_ref", flat=True)) == ["TX-A", "tx-a"]
        assert Balance.objects.get(user=user, coin=eth).available == Decimal(2)
