from decimal import Decimal as D

from django.db import migrations, models

# The seed coins' sweep thresholds, in coin units: a deposit address holding at least this is swept
# into a hot address. Ops tune them in the admin (a change takes effect once a second person approves it).
SWEEP_THRESHOLDS = {
    "BTC": "0.001",
    "ETH": "0.01",
    "USDT-ERC20": "10",
    "TRX": "10",
    "USDT-TRC20": "10",
}


def load_sweep_thresholds(apps, schema_editor):
    CoinConfig = apps.get_model("coins", "CoinConfig")
    for coin_id, threshold in SWEEP_THRESHOLDS.items():
        CoinConfig.objects.filter(coin_id=coin_id).update(sweep_threshold=D(threshold))


class Migration(migrations.Migration):

    dependencies = [
        ('coins', '0006_risk_rule_thresholds'),
    ]

    operations = [
        migrations.AddField(
            model_name='coinconfig',
            name='sweep_threshold',
            field=models.DecimalField(blank=True, decimal_places=18, help_text='A deposit address holding at least this is swept into a hot address (empty: never swept).', max_digits=38, null=True),
        ),
        migrations.RunPython(load_sweep_thresholds, migrations.RunPython.noop),
    ]
