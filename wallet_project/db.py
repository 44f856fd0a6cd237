"""Database helpers shared by the apps' models."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from django.db import OperationalError, ProgrammingError, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.base.schema import BaseDatabaseSchemaEditor
from django.db.models.constants import OnConflict
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


class ExactCharField(models.CharField):
    """
    A CharField compared byte for byte, for idempotency keys and business numbers.

    MySQL/MariaDB compare text with the column's collation, by default a case- and
    accent-insensitive one (utf8mb4_unicode_ci): there "ABC" finds "abc" and a unique index
    treats them as one key, so two different keys collide. This field's column gets the binary
    utf8mb4_bin collation on MySQL/MariaDB. SQLite compares bytes already and knows no MySQL
    collation name, so its column is left as it is (a plain db_collation would fail there).
    utf8mb4_bin still ignores trailing spaces (PAD SPACE): keys are stripped before storing.
    """

    MYSQL_COLLATION = "utf8mb4_bin"

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, object]:
        params = super().db_parameters(connection)
        if connection.vendor == "mysql":
            params["collation"] = self.MYSQL_COLLATION
        return params


@dataclass(frozen=True)
class Statement:
    """One SQL statement with its parameters, for statements_run."""

    sql: str
    params: Sequence[object] = ()
    objs: Sequence[models.Model] = ()  # new instances whose keys the statement's RETURNING sets

    def __post_init__(self) -> None:
        # One statement each: statements_run pairs the server's result sets with Statements.
        if ";" in self.sql:
            raise ValueError("a Statement holds exactly one SQL statement")


def row_insert(obj: models.Model, *, using: str = "default") -> models.Model:
    """INSERT one new model instance (see rows_insert) and return it with its primary key set."""
    rows_insert([obj], using=using)
    return obj


def rows_insert(objs: list[models.Model], *, using: str = "default") -> list[models.Model]:
    """
    INSERT new instances of one model with one prepared multi-row statement; set their keys.

    The same rows Model.save(force_insert=True) or bulk_create would write, without the query
    compiler, which costs more than the database on the ledger's and the scanner's hot paths. No
    signals are sent (the project uses none); auto_now fields are filled as save() would.
    """
    if objs:
        statements_run([insert_statement(objs, using=using)], using=using)
    return objs


def rows_insert_ignoring_conflicts(objs: list[models.Model], *, using: str = "default") -> int:
    """
    INSERT the rows that break no unique key, as bulk_create(ignore_conflicts=True); return how many.

    INSERT IGNORE on MySQL also turns any other row error (a foreign key, strict mode) into a
    warning: a count below len(objs) says some rows were skipped, for whatever reason. No keys
    are set.
    """
    if not objs:
        return 0
    statement = insert_statement(objs, ignore_conflicts=True, using=using)
    with connections[using].cursor() as cursor:
        cursor.execute(statement.sql, statement.params)
        return cursor.rowcount


def insert_statement(
    objs: Sequence[models.Model], *, ignore_conflicts: bool = False, using: str = "default"
) -> Statement:
    """The INSERT of rows_insert (or of rows_insert_ignoring_conflicts), to run through statements_run."""
    connection = connections[using]
    meta = objs[0]._meta
    key = (meta.label, connection.vendor, len(objs), ignore_conflicts)
    cached = _INSERT_SQL.get(key)
    if cached is None:
        fields = [f for f in meta.concrete_fields if not f.primary_key]
        stamped = [f for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)]
        columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        verb = connection.ops.insert_statement(on_conflict=OnConflict.IGNORE if ignore_conflicts else None)
        sql = f"{verb} {connection.ops.quote_name(meta.db_table)} ({columns}) VALUES " + ", ".join([row] * len(objs))
        if connection.features.can_return_rows_from_bulk_insert and not ignore_conflicts:
            sql += f" RETURNING {connection.ops.quote_name(meta.pk.column)}"
        cached = (sql, fields, stamped)
        if len(_INSERT_SQL) < 512:
            _INSERT_SQL[key] = cached
    sql, fields, stamped = cached
    now = timezone.now()
    params: list[object] = []
    for obj in objs:
        for field in stamped:
            if getattr(obj, field.attname) is None:
                setattr(obj, field.attname, now)
        params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in fields)
    # Skipped rows return nothing: the keys of the inserted ones cannot be matched to objs.
    return Statement(sql=sql, params=params, objs=() if ignore_conflicts else objs)


_INSERT_SQL: dict[tuple[str, str, int, bool], tuple[str, list[models.Field], list[models.Field]]] = {}


def statements_run(statements: Sequence[Statement], *, using: str = "default") -> list[list[tuple]]:
    """
    Run statements in order, in one round trip where the database allows, and return their rows.

    On MySQL/MariaDB (through wallet_project.db_backends.mysql) they travel as one multi-statement
    query: a posting's flow INSERT, balance UPDATE and event INSERT cost one round trip instead of
    three. The server stops at the first failing statement and its error is raised here as it
    would be statement by statement (an IntegrityError for a key or CHECK, wherever it stood).
    Elsewhere (SQLite) they run one by one. New instances passed as a Statement's objs get their
    keys from its RETURNING rows. Keep a call to a few statements of at most 500 rows each: the
    query must fit the server's max_allowed_packet.
    """
    connection = connections[using]
    results: list[list[tuple]] = []
    with connection.cursor() as cursor:
        together = len(statements) > 1 and getattr(connection, "sends_statements_together", False)
        if together:
            cursor.execute("; ".join(s.sql for s in statements), [p for s in statements for p in s.params])
        for index, statement in enumerate(statements):
            if not together:
                cursor.execute(statement.sql, statement.params)
            elif index and not cursor.nextset():  # nextset() raises this statement's error, if it failed
                raise ProgrammingError(f"{len(statements)} statements sent, {index} results came back")
            rows = list(cursor.fetchall()) if cursor.description else []
            if rows and statement.objs:
                # MariaDB and SQLite return the rows of a multi-row INSERT in the order of VALUES.
                for obj, (pk,) in zip(statement.objs, rows, strict=True):
                    obj.pk = pk
            elif len(statement.objs) == 1:
                statement.objs[0].pk = cursor.lastrowid  # MySQL 8: no RETURNING
            for obj in statement.objs:
                obj._state.adding = False
                obj._state.db = using
            results.append(rows)
        if together and cursor.nextset():
            raise ProgrammingError(f"{len(statements)} statements sent, more results came back")
    return results


DEADLOCK_ERRORS = (1213, 1205)  # MariaDB/MySQL: deadlock found, lock wait timeout


def values_rows(queryset: models.QuerySet, *, using: str = "default") -> list[tuple]:
    """
    The rows of a values_list() queryset as plain tuples, fetched in one go.

    On MySQL/MariaDB the compiled query runs on a bare cursor: mysqlclient already returns int, str
    and Decimal, and Django's per-row iteration (a few microseconds a row) is what a 100,000-row
    read spends most of its time on. Only for querysets whose columns need no conversion there
    (integers, text, DECIMAL; not datetimes or JSON). Elsewhere (SQLite) the queryset runs as usual.
    """
    connection = connections[using]
    if connection.vendor != "mysql":
        return [tuple(row) for row in queryset]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


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
