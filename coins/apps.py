from django.apps import AppConfig


class CoinsConfig(AppConfig):
    name = "coins"
    default_auto_field = "django.db.models.BigAutoField"
