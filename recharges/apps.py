from django.apps import AppConfig


class RechargesConfig(AppConfig):
    name = "recharges"
    verbose_name = "Deposits and chain scanning"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Lifting a reorg hold is a four-eyes change: its kinds join controls.proposals.
        from recharges import hold_changes

        hold_changes.register()
