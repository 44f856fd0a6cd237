"""Create a back-office account in one role (auditor or operator); the password is never echoed."""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from wallet_project import roles
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = (
        "Create a staff user in the Auditors or Operators group. The password is asked twice at the "
        "terminal, or read from the first line of --password-file (- for standard input); never an argument."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # Checked in handle, not by argparse: bad input gets one line, not a usage screen.
        parser.add_argument("--username", default="")
        parser.add_argument("--role", default="", help=f"one of: {', '.join(roles.ROLE_GROUPS)}")
        parser.add_argument("--email", default="")
        parser.add_argument("--password-file", default=None, help="a file whose first line is the password")

    def handle(self, *args: object, **options: object) -> None:
        username = str(options["username"]).strip()
        role = str(options["role"]).strip()
        if not username:
            raise CommandError("--username is required")
        if role not in roles.ROLE_GROUPS:
            raise CommandError(f"--role must be one of: {', '.join(roles.ROLE_GROUPS)}")
        password = self._password(options["password_file"])
        try:
            user = roles.staff_user_create(
                username=username, role=role, password=password, email=str(options["email"]).strip()
            )
        except WalletError as error:
            raise CommandError(error.message) from None
        group = roles.ROLE_GROUPS[role]
        self.stdout.write(self.style.SUCCESS(f"Created {user.get_username()}: staff, {group} group, log in at /admin/"))

    def _password(self, password_file: object) -> str:
        if password_file == "-":  # noqa: S105 (standard input, not a password)
            return _first_line(sys.stdin.readline())
        if password_file:
            path = Path(str(password_file))
            try:
                with path.open(encoding="utf-8") as handle:
                    return _first_line(handle.readline())
            except OSError as error:
                raise CommandError(f"cannot read --password-file {path}: {error.strerror}") from None
        if not sys.stdin.isatty():
            raise CommandError("no terminal to ask the password at: give --password-file")
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != first:
            raise CommandError("the two passwords differ")
        return first


def _first_line(text: str) -> str:
    password = text.rstrip("\r\n")
    if not password:
        raise CommandError("the password is empty")
    return password
