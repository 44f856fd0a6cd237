from django.apps import AppConfig


class ReservesConfig(AppConfig):
    name = "reserves"
    verbose_name = "Proof of reserves"
    default_auto_field = "django.db.models.BigAutoField"
