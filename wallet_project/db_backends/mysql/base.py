"""
Django's MySQL/MariaDB backend, with transactions opened by BEGIN.

Django's own backend opens an atomic block by switching the session's autocommit off
(`SET autocommit=0`) and closes it by switching it back on: two round trips per transaction
that the database does not need. Here an atomic block sends `BEGIN` instead, the way Django's
SQLite backend does; COMMIT or ROLLBACK ends it and the session is back in autocommit mode, so
switching autocommit on again is free (the driver sees the server already in that mode and sends
nothing). Isolation, locking and savepoints are the same as in a SET autocommit=0 transaction.

Manual transaction management (`transaction.set_autocommit(False)`) still switches the session
for real: only atomic blocks take this path.
"""

from __future__ import annotations

from django.db.backends.mysql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def _start_transaction_under_autocommit(self) -> None:
        with self.wrap_database_errors:
            self.connection.query("BEGIN")
