from django.apps import AppConfig


class ChainsConfig(AppConfig):
    name = "chains"
    verbose_name = "Chain state"
    default_auto_field = "django.db.models.BigAutoField"
