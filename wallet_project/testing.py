"""Test support for the back-office: what a browser sends back from an admin form; the roles after a flush."""

from __future__ import annotations

import importlib
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
