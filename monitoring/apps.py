from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Puts the business metrics (read from the database at scrape time) on this process's /metrics.
        from monitoring import metrics

        metrics.register()
