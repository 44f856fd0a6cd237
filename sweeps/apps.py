from django.apps import AppConfig


class SweepsConfig(AppConfig):
    name = "sweeps"
    verbose_name = "Sweeps (deposit addresses into hot wallets)"
    default_auto_field = "django.db.models.BigAutoField"
