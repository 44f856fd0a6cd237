from django.apps import AppConfig


class RechargesConfig(AppConfig):
    name = "recharges"
    default_auto_field = "django.db.models.BigAutoField"
