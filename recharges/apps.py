from django.apps import AppConfig


class RechargesConfig(AppConfig):
    name = "recharges"
    verbose_name = "Deposits and chain scanning"
    default_auto_field = "django.db.models.BigAutoField"
