from django.apps import AppConfig


class TreasuryConfig(AppConfig):
    name = "treasury"
    verbose_name = "Treasury: hot and cold wallets"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Changing a hot address's thresholds is a four-eyes change: its kind joins controls.proposals.
        from treasury import thresholds

        thresholds.register()
