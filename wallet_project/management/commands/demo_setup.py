"""Set up a local run for a newcomer: demo users, HD seeds, funded hot wallets; print what to do next."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from chains import devsend
from wallet_project import devsetup
from wallet_project import logging as wallet_logging


class Command(BaseCommand):
    help = (
        "Development only: create the demo admin and API user, the HD seeds and hot wallets of every chain, "
        "fund the hot wallets on the dev chains, and print how to try a deposit and a withdrawal."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8083", help="where the web process listens")
        parser.add_argument("--no-funding", action="store_true", help="do not fund the hot wallets on the dev chains")

    def handle(self, *args: object, **options: object) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo_setup is for development only; create real users with createsuperuser")
        log_file = Path(settings.VAR_DIR) / "log" / "demo_setup.log"
        # Its output is text for a person: log records go to a file, not between its lines.
        with wallet_logging.console_logging_to_file(log_file):
            self._handle(options, log_file=log_file)

    def _handle(self, options: dict, *, log_file: Path) -> None:
        base_url = str(options["base_url"]).rstrip("/")
        credentials_file = Path(settings.VAR_DIR) / "demo-credentials.txt"
        record_path = Path(settings.DEVCHAIN_FILE)
        try:
            devsetup.fresh_chains_reset(record_path=record_path, say=self.stderr.write)
            credentials = devsetup.demo_users_ensure(credentials_file=credentials_file)
            devsetup.hd_seeds_ensure()
            hot = devsetup.hot_addresses_ensure()
        except devsetup.DevSetupError as exc:
            raise CommandError(str(exc)) from None
        funded: list[devsetup.Funded] = []
        note = ""
        if options["no_funding"]:
            note = "Hot wallets created, not funded (--no-funding): " + ", ".join(f"{c} {a}" for c, _, a in hot)
        else:
            try:
                funded = devsetup.hot_wallets_fund(hot=hot, record_path=record_path)
            except devsend.NotADevChain as exc:
                note = f"Hot wallets created but not funded: {exc}"
            except devsend.DevSendError as exc:
                raise CommandError(f"funding the hot wallets failed: {exc} (log: {log_file})") from None
        self.stdout.write(
            devsetup.instructions(
                base_url=base_url, credentials=credentials, credentials_file=credentials_file, funded=funded, note=note
            )
        )
