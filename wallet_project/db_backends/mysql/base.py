"""
Django's MySQL/MariaDB backend, with transactions opened by BEGIN and statements sent together.

Django's own backend opens an atomic block by switching the session's autocommit off
(`SET autocommit=0`) and closes it by switching it back on: two round trips per transaction
that the database does not need. Here an atomic block sends `BEGIN` instead, as Django's SQLite
backend does; COMMIT or ROLLBACK ends it and the session is back in autocommit mode, so switching
autocommit on again is free (the driver sees the server already in that mode and sends nothing).
Isolation, locking, savepoints and on_commit hooks are those of a SET autocommit=0 transaction.
Manual transaction management (`transaction.set_autocommit(False)`) still switches the session
for real: only atomic blocks take this path.

The one difference: once the server ends a BEGIN transaction on its own, later statements of the
block run in autocommit mode, where after SET autocommit=0 they would open a new transaction.
The server does that on a deadlock (InnoDB rolls the whole transaction back) and on statements
that commit implicitly (DDL, LOCK TABLES). A deadlock inside an atomic block therefore marks the
block for rollback here: any further query in it raises TransactionManagementError instead of
running outside a transaction, which is stricter than Django's backend. DDL never runs inside
an atomic block in this project (Django runs MySQL migrations outside transactions).

Several statements may travel in one query (`wallet_project.db.statements_run`; the driver
enables multi-statements by default). The errors of the second and later ones are raised by
`nextset()`, which Django's backend does not translate: here a violated CHECK or NOT NULL becomes
an IntegrityError wherever the statement stood, as it is for a single statement.
"""

from __future__ import annotations

from django.db import IntegrityError
from django.db.backends.mysql import base
from django.db.utils import DatabaseErrorWrapper
from django.utils.functional import cached_property

DEADLOCK = 1213  # ER_LOCK_DEADLOCK: the server rolled the whole transaction back


class CursorWrapper(base.CursorWrapper):
    def nextset(self) -> int | None:
        try:
            return self.cursor.nextset()
        except base.Database.OperationalError as error:
            if error.args and error.args[0] in self.codes_for_integrityerror:
                raise IntegrityError(*tuple(error.args)) from error
            raise


class _ErrorWrapper(DatabaseErrorWrapper):
    def __exit__(
        self, exc_type: type[BaseException] | None, exc_value: BaseException | None, traceback: object
    ) -> None:
        if exc_value is not None and self.wrapper.in_atomic_block:
            args = getattr(exc_value, "args", ())
            if args and args[0] == DEADLOCK:
                self.wrapper.needs_rollback = True
        return super().__exit__(exc_type, exc_value, traceback)


class DatabaseWrapper(base.DatabaseWrapper):
    # Read by wallet_project.db.statements_run: this backend translates errors at nextset().
    sends_statements_together = True

    def _start_transaction_under_autocommit(self) -> None:
        with self.wrap_database_errors:
            self.connection.query("BEGIN")

    def create_cursor(self, name: str | None = None) -> CursorWrapper:
        return CursorWrapper(self.connection.cursor())

    @cached_property
    def wrap_database_errors(self) -> DatabaseErrorWrapper:
        return _ErrorWrapper(self)
