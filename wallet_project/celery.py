"""The Celery application shared by workers, beat and the web process that enqueues tasks."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wallet_project.settings")

app = Celery("wallet_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
def _bind_task_id(task_id: str | None = None, **kwargs: object) -> None:
    # Log lines written while a task runs carry its id, the way requests carry theirs.
    from wallet_project import logging as wallet_logging

    wallet_logging.task_id_var.set(task_id or "")


@task_postrun.connect
def _unbind_task_id(**kwargs: object) -> None:
    from wallet_project import logging as wallet_logging

    wallet_logging.task_id_var.set("")
