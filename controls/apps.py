from django.apps import AppConfig


class ControlsConfig(AppConfig):
    name = "controls"
    verbose_name = "Risk controls"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The kinds of change this app's proposals apply (breaker clears, blacklist, coin settings).
        from controls import changes

        changes.register()
