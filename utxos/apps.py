from django.apps import AppConfig


class UtxosConfig(AppConfig):
    name = "utxos"
    verbose_name = "BTC UTXO set"
    default_auto_field = "django.db.models.BigAutoField"
