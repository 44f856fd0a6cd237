from django.apps import AppConfig


class AssetsConfig(AppConfig):
    name = "assets"
    verbose_name = "Balances and events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Puts the event relay's lag (read from the outbox at scrape time) on every process's /metrics.
        from assets.relay import metrics  # noqa: F401
