"""Database helpers shared by the apps' models."""

from __future__ import annotations

from django.db import connections, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.utils import timezone


class DecimalArithmeticCheck(models.CheckConstraint):
    """
    A CHECK constraint doing exact DECIMAL arithmetic (balance_after = balance_before + amount).

    MySQL/MariaDB evaluate it exactly and it is enforced there. SQLite, the embedded demo
    default, keeps decimals as floating point, where 1e-8 + 2e-8 != 3e-8: there the constraint
    is left out rather than refusing correct postings.
    """

    def _skip(self, schema_editor: BaseDatabaseSchemaEditor) -> bool:
        return schema_editor.connection.vendor == "sqlite"

    def constraint_sql(self, model: type[models.Model], schema_editor: BaseDatabaseSchemaEditor) -> object:
        return None if self._skip(schema_editor) else super().constraint_sql(model, schema_editor)

    def create_sql(self, model: type[models.Model], schema_editor: BaseDatabaseSchemaEditor) -> object:
        return None if self._skip(schema_editor) else super().create_sql(model, schema_editor)

    def remove_sql(self, model: type[models.Model], schema_editor: BaseDatabaseSchemaEditor) -> object:
        return None if self._skip(schema_editor) else super().remove_sql(model, schema_editor)


def row_insert(obj: models.Model, *, using: str = "default") -> models.Model:
    """
    INSERT one new model instance with a prepared statement and set its primary key.

    The same row Model.save(force_insert=True) would write, without the query compiler, which
    costs milliseconds per statement on the ledger's hottest path. No signals are sent (the
    project uses none) and no defaults beyond the fields' own are applied.
    """
    connection = connections[using]
    meta = obj._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    for field in fields:
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            if getattr(obj, field.attname) is None:
                setattr(obj, field.attname, timezone.now())
    sql = _INSERT_SQL.get((meta.label, connection.vendor))
    if sql is None:
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        marks = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES ({marks})"  # noqa: S608
        _INSERT_SQL[(meta.label, connection.vendor)] = sql
    params = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        obj.pk = cursor.lastrowid
    obj._state.adding = False
    obj._state.db = using
    return obj


_INSERT_SQL: dict[tuple[str, str], str] = {}
