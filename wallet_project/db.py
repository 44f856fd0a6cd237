"""Database helpers shared by the apps' models."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import OperationalError, connections, models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.utils import timezone

T = TypeVar("T")


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
    """INSERT one new model instance (see rows_insert) and return it with its primary key set."""
    rows_insert([obj], using=using)
    return obj


def rows_insert(objs: list[models.Model], *, using: str = "default") -> list[models.Model]:
    """
    INSERT new instances of one model with one prepared multi-row statement; set their keys.

    The same rows Model.save(force_insert=True) or bulk_create would write, without the query
    compiler, which costs more than the database on the ledger's hot paths. No signals are sent
    (the project uses none); auto_now fields are filled as save() would.
    """
    if not objs:
        return objs
    connection = connections[using]
    meta = objs[0]._meta
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    stamped = [f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
    now = timezone.now()
    params: list[object] = []
    for obj in objs:
        for field in stamped:
            if getattr(obj, field.attname) is None:
                setattr(obj, field.attname, now)
        params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields)
    returning = connection.features.can_return_rows_from_bulk_insert
    key = (meta.label, connection.vendor, len(objs))
    sql = _INSERT_SQL.get(key)
    if sql is None:
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = f"INSERT INTO {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES " + ", ".join(  # noqa: S608
            [row] * len(objs)
        )
        if returning:
            sql += f" RETURNING {connection.ops.quote_name(meta.pk.column)}"
        if len(_INSERT_SQL) < 512:
            _INSERT_SQL[key] = sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning:
            # MariaDB and SQLite return the rows of a multi-row INSERT in the order of VALUES.
            for obj, (pk,) in zip(objs, cursor.fetchall(), strict=True):
                obj.pk = pk
        elif len(objs) == 1:
            objs[0].pk = cursor.lastrowid
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using
    return objs


_INSERT_SQL: dict[tuple[str, str, int], str] = {}


DEADLOCK_ERRORS = (1213, 1205)  # MariaDB/MySQL: deadlock found, lock wait timeout


def retry_on_deadlock(unit: Callable[[], T], *, attempts: int = 3) -> T:
    """
    Run a durable transaction unit again when the database picked it as a deadlock victim.

    Only for units that are idempotent as a whole (the ledger's references, the scanner's
    compare-and-set cursor): the victim's transaction was rolled back entirely, so running it
    again is the same as running it once.
    """
    for attempt in range(1, attempts + 1):
        try:
            return unit()
        except OperationalError as error:
            if attempt == attempts or not error.args or error.args[0] not in DEADLOCK_ERRORS:
                raise
            time.sleep(random.uniform(0.01, 0.05) * attempt)
    raise AssertionError("unreachable")
