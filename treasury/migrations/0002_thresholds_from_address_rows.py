"""
The seed's min_balance / max_balance of hot wallet_address rows become the native coin's threshold
of that address; rows still at the seed's defaults (0 and 1,000,000) set no limit.
"""

from decimal import Decimal

from django.db import migrations

SEED_MIN, SEED_MAX = Decimal(0), Decimal(1000000)
HOT = 1


def forwards(apps, schema_editor):
    WalletAddress = apps.get_model("addresses", "WalletAddress")
    HotThreshold = apps.get_model("treasury", "HotThreshold")
    for row in WalletAddress.objects.filter(address_type=HOT).order_by("id"):
        low = row.min_balance if row.min_balance != SEED_MIN else None
        high = row.max_balance if row.max_balance != SEED_MAX else None
        if low is None and high is None:
            continue
        HotThreshold.objects.get_or_create(
            address_id=row.id, coin_id=row.coin_id, defaults={"min_balance": low, "max_balance": high}
        )


class Migration(migrations.Migration):
    dependencies = [("treasury", "0001_initial"), ("addresses", "0006_hot_regions_cold_registration")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
