from wallet_project.money import widen_default_context

widen_default_context()

from wallet_project.celery import app as celery_app  # noqa: E402

__all__ = ["celery_app"]
