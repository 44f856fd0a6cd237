"""Database helpers shared by the apps' models."""

from __future__ import annotations

from django.db import models
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


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
