"""
Propose a file of addresses for the blacklist: `blacklist_import FILE --by USERNAME --reason TEXT`.

One `CHAIN,ADDRESS[,REASON]` per line (blank lines and `#` comments skipped). Every line is
checked for its chain first; one bad line stops the command with one line naming it, and nothing
is proposed. Otherwise the whole file becomes one proposal, applied when a second person approves
it in the admin (Risk controls → Proposed changes).
"""

from __future__ import annotations

import sys

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from controls import services
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = "Propose the addresses of a file (CHAIN,ADDRESS[,REASON] per line) for the blacklist."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="the file to import; - reads standard input")
        parser.add_argument(
            "--by", required=True, help="the staff account proposing it (needs controls.manage_blacklist)"
        )
        parser.add_argument("--reason", required=True, help="why, for the whole file (a line's own reason wins)")

    def handle(self, *args: object, **options: object) -> None:
        try:
            lines = self._read(str(options["file"]))
            entries = services.blacklist_lines_parse(lines)
            if not entries:
                raise CommandError(f"{options['file']}: no address in the file")
            user = get_user_model().objects.filter(username=options["by"], is_active=True, is_staff=True).first()
            if user is None:
                raise CommandError(f"--by {options['by']!r}: no active staff account of that name")
            change = services.blacklist_propose_add(entries=entries, user=user, reason=str(options["reason"]))
        except WalletError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Proposal #{change.pk}: {change.summary}, {len(change.after['add'])} new; it applies when a second "
            "person approves it in the admin (Risk controls → Proposed changes)."
        )

    def _read(self, name: str) -> list[str]:
        if name == "-":
            return sys.stdin.read().splitlines()
        try:
            with open(name, encoding="utf-8") as handle:
                return handle.read().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {name}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
