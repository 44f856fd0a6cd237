"""The five coins of the service, with conservative limits that ops tune in the admin."""

from decimal import Decimal as D

from django.db import migrations

COINS = [
    # coin_id, name, symbol, chain_id, chain_name, contract, decimals, confirmations,
    # min_recharge, min_withdraw, max_withdraw, fee, daily_limit, audit, dual_audit, sort
    ("BTC", "Bitcoin", "BTC", "BTC", "Bitcoin", None, 8, 3,
     "0.0001", "0.001", "100", "0.0005", "200", "1", "10", 10),
    ("ETH", "Ether", "ETH", "ETH", "Ethereum", None, 18, 12,
     "0.001", "0.01", "1000", "0.003", "2000", "10", "100", 20),
    ("USDT-ERC20", "Tether USD (ERC20)", "USDT", "ETH", "Ethereum",
     "0xdAC17F958D2ee523a2206206994597C13D831ec7", 6, 12,
     "1", "10", "500000", "5", "1000000", "10000", "100000", 30),
    ("TRX", "TRON", "TRX", "TRON", "TRON", None, 6, 19,
     "1", "10", "1000000", "1", "5000000", "100000", "1000000", 40),
    ("USDT-TRC20", "Tether USD (TRC20)", "USDT", "TRON", "TRON",
     "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", 6, 19,
     "1", "10", "500000", "1", "1000000", "10000", "100000", 50),
]


def load_coins(apps, schema_editor):
    CoinConfig = apps.get_model("coins", "CoinConfig")
    for (coin_id, name, symbol, chain_id, chain_name, contract, decimals, confirmations, min_recharge,
         min_withdraw, max_withdraw, fee, daily_limit, audit, dual_audit, sort) in COINS:
        CoinConfig.objects.update_or_create(
            coin_id=coin_id,
            defaults={
                "coin_name": name, "coin_symbol": symbol, "chain_id": chain_id, "chain_name": chain_name,
                "contract_address": contract, "decimals": decimals, "required_confirmations": confirmations,
                "min_recharge_amount": D(min_recharge), "max_recharge_amount": D("100000000"),
                "min_withdraw_amount": D(min_withdraw), "max_withdraw_amount": D(max_withdraw),
                "withdraw_fee": D(fee), "withdraw_fee_type": 1, "withdraw_fee_rate": D("0.001"),
                "withdraw_daily_limit": D(daily_limit), "withdraw_audit_threshold": D(audit),
                "withdraw_dual_audit_threshold": D(dual_audit), "sort_order": sort,
            },
        )


def unload_coins(apps, schema_editor):
    apps.get_model("coins", "CoinConfig").objects.filter(coin_id__in=[c[0] for c in COINS]).delete()


class Migration(migrations.Migration):
    dependencies = [("coins", "0001_initial")]
    operations = [migrations.RunPython(load_coins, unload_coins)]
