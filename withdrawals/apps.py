from django.apps import AppConfig


class WithdrawalsConfig(AppConfig):
    name = "withdrawals"
    verbose_name = "Withdrawals"
    default_auto_field = "django.db.models.BigAutoField"
