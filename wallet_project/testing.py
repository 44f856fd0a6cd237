"""Test support: what a browser sends back from an admin form; the roles after a flush; the worker of a kill
test; workers racing in threads."""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from html.parser import HTMLParser
from pathlib import Path


class _FormFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, list[str]] = {}
        self._in_form = False
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "form" and (attr.get("id") or "").endswith("_form"):
            self._in_form = True
        if not self._in_form or not (tag == "option" or attr.get("name")):
            return
        if tag == "input" and attr.get("type") not in ("submit", "button", "file"):
            if attr.get("type") in ("checkbox", "radio") and "checked" not in attr:
                return
            self.data.setdefault(attr["name"], []).append(attr.get("value") or ("on" if "checked" in attr else ""))
        elif tag == "select":
            self._select = attr["name"]
        elif tag == "option" and self._select is not None and "selected" in attr:
            self.data.setdefault(self._select, []).append(attr.get("value") or "")
        elif tag == "textarea":
            self._textarea = attr["name"]
            self.data.setdefault(self._textarea, []).append("")

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.data[self._textarea][-1] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def admin_form_data(html: str) -> dict[str, list[str]]:
    """Return the fields of the admin change form in html as a browser's Save would post them."""
    parser = _FormFields()
    parser.feed(html)
    return parser.data


def roles_seed() -> None:
    """Replay the role migrations (their GRANTS and REVOKES) after a transactional test flushed the tables."""
    from django.apps import apps
    from django.db import DEFAULT_DB_ALIAS

    from wallet_project import roles

    folder = Path(__file__).parent / "migrations"
    for path in sorted(folder.glob("[0-9][0-9][0-9][0-9]_*.py")):
        module = importlib.import_module(f"wallet_project.migrations.{path.stem}")
        if hasattr(module, "GRANTS"):
            roles.permissions_grant(apps=apps, using=DEFAULT_DB_ALIAS, grants=module.GRANTS)
        if hasattr(module, "REVOKES"):
            roles.permissions_grant(apps=apps, using=DEFAULT_DB_ALIAS, grants=module.REVOKES, revoke=True)


def worker_run(
    module: str, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[bytes]:
    """
    Run `python -m module *args` from the project folder on this test's MariaDB database, as a kill
    test's worker that a fault hook kills with SIGKILL at a named step (its return code is then -9).

    env: what the worker needs beside this process's environment (its node's URL, chain settings);
    it logs errors only. The test database is passed as DATABASE_URL, never created anew.
    """
    from django.db import connection

    db = connection.settings_dict
    url = f"mysql://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 3306}/{db['NAME']}"
    full = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "ERROR", **(env or {})}
    full.pop("DATABASE_TEST_NAME", None)
    return subprocess.run(  # noqa: S603 (our own interpreter and module)
        [sys.executable, "-m", module, *args],
        cwd=Path(__file__).resolve().parents[1],
        env=full,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def kill_at(step: str, *, nth: int = 1) -> Callable[[str], None]:
    """A worker's fault hook: SIGKILL this process the nth time it reaches `step` (a real kill -9: no cleanup)."""
    left = [nth]

    def die(name: str) -> None:
        if name == step:
            left[0] -= 1
            if left[0] == 0:
                os.kill(os.getpid(), signal.SIGKILL)

    return die


def race(work: Callable[[], object], *, workers: int = 2) -> list[BaseException]:
    """
    Run `work` in `workers` threads released at once (a barrier), each on its own database
    connection (closed when it ends); return what they raised, for the test to assert on.
    """
    from django.db import connection

    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
