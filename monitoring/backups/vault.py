"""
The key vault's rows (wallet_key_vault) as a document, and back.

The rows are taken as stored: each secret stays AES-256-GCM ciphertext under the key-encryption
key, so nothing here can read a key, and the export is useless without the KEK (kept elsewhere).
Works at the storage level like the dump tool does, through Django's serializers: the backup
code never imports the addresses app, and only addresses.signer ever decrypts.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

from django.apps import apps
from django.core import serializers
from django.db import transaction

from monitoring.backups.crypto import BackupError

VAULT_MODEL = ("addresses", "KeySecret")
# What makes a vault entry the same secret; next_index (how far derivation went) may move on.
IDENTITY_FIELDS = ("key_id", "kind", "chain_id", "purpose", "seed_slot", "fingerprint", "key_version", "ciphertext")


def _model():
    return apps.get_model(*VAULT_MODEL)


def _json_value(value: object) -> object:
    # Full precision: Django's JSON serializer cuts datetimes to milliseconds, and a restore must
    # give back the rows as they were.
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    raise TypeError(f"cannot export a {type(value).__name__}")


def vault_document() -> tuple[str, dict[str, object]]:
    """Return (the vault rows as JSON, a public summary for the manifest: ids, versions, fingerprints)."""
    model = _model()
    with transaction.atomic(durable=True):  # one read of every row
        rows = list(model.objects.order_by("pk"))
    text = json.dumps(serializers.serialize("python", rows), default=_json_value, sort_keys=True)
    summary = {
        "table": model._meta.db_table,
        "rows": len(rows),
        "key_versions": {str(version): n for version, n in sorted(Counter(r.key_version for r in rows).items())},
        "entries": [
            {"id": r.pk, "key_id": str(r.key_id), "chain_id": r.chain_id, "kind": r.kind, "fingerprint": r.fingerprint}
            for r in rows
        ],
    }
    return text, summary


def _same_secret(stored: object, restored: object) -> bool:
    for name in IDENTITY_FIELDS:
        a, b = getattr(stored, name), getattr(restored, name)
        if name == "ciphertext":
            a, b = bytes(a), bytes(b)
        if a != b:
            return False
    return True


@transaction.atomic(durable=True)
def vault_load(text: str) -> tuple[int, int]:
    """
    Put the exported vault rows into this database: missing rows are inserted with their ids, rows
    already there must hold the same secret (next_index keeps the higher of the two, so no
    address index is derived twice). Returns (inserted, already present).

    :raises BackupError: a row of the same id holds another secret (nothing is written).
    """
    model = _model()
    inserted = present = 0
    for item in serializers.deserialize("python", json.loads(text)):
        restored = item.object
        stored = model.objects.select_for_update().filter(pk=restored.pk).first()
        if stored is None:
            item.save()
            inserted += 1
            continue
        if not _same_secret(stored, restored):
            raise BackupError(
                f"vault entry {restored.pk} in this database holds another secret than the export "
                "(rotated or replaced since): nothing was restored"
            )
        if restored.next_index > stored.next_index:
            model.objects.filter(pk=stored.pk).update(next_index=restored.next_index)
        present += 1
    return inserted, present
