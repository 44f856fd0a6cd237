from django.apps import AppConfig
from django.conf import settings


class AddressesConfig(AppConfig):
    name = "addresses"
    verbose_name = "Addresses and keys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Production refuses to start with a missing, unreadable or malformed key-encryption key
        # (settings.py already refuses when none is named). Development creates one lazily.
        if settings.PRODUCTION:
            from addresses import signer

            signer.keyring_check()
