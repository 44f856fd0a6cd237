from django.apps import AppConfig


class CoinsConfig(AppConfig):
    name = "coins"
    verbose_name = "Coins"
    default_auto_field = "django.db.models.BigAutoField"
