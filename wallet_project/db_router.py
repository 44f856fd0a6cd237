"""Route report reads to the replica when one is configured; everything else uses the primary."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Model

# Only read models that can tolerate replication lag go here. Balances, flows, deposits and
# withdrawals are money: they are always read from the primary, where they are locked and written.
REPLICA_READ_LABELS = frozenset({"monitoring.alert"})


class ReadReplicaRouter:
    def db_for_read(self, model: type[Model], **hints: object) -> str:
        if "replica" in settings.DATABASES and model._meta.label_lower in REPLICA_READ_LABELS:
            return "replica"
        return "default"

    def db_for_write(self, model: type[Model], **hints: object) -> str:
        return "default"

    def allow_relation(self, obj1: Model, obj2: Model, **hints: object) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: object) -> bool:
        return db == "default"
