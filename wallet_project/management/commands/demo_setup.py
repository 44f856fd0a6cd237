"""Create the demo back-office admin and a demo API user for a local run (development only)."""

from __future__ import annotations

import secrets
from io import StringIO
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction


class Command(BaseCommand):
    help = "Create (once) a demo admin and a demo API user; print how to log in. Refused in production."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8083", help="where the web process listens")

    def handle(self, *args: object, **options: object) -> None:
        base_url = str(options["base_url"]).rstrip("/")
        if settings.PRODUCTION:
            raise CommandError("demo_setup is for development only; create real users with createsuperuser")
        credentials_file = Path(settings.VAR_DIR) / "demo-credentials.txt"
        User = get_user_model()
        with transaction.atomic(durable=True):
            if not User.objects.filter(username="admin").exists():
                admin_password = secrets.token_urlsafe(12)
                demo_password = secrets.token_urlsafe(12)
                User.objects.create_superuser("admin", "admin@localhost", admin_password)
                User.objects.create_user("demo", "demo@localhost", demo_password)
                credentials_file.write_text(f"admin {admin_password}\ndemo {demo_password}\n")
                credentials_file.chmod(0o600)
        for chain_id in ("BTC", "ETH", "TRON"):
            # Development deposit seeds under the dev-only KEK, so deposit addresses work at once.
            try:
                call_command(
                    "create_hd_wallet", chain=chain_id, purpose="deposit", stdout=StringIO(), stderr=StringIO()
                )
            except CommandError as error:
                if "already has" not in str(error):
                    raise
        if not credentials_file.exists():
            raise CommandError(f"demo users exist but {credentials_file} is gone; reset with changepassword")
        # Local demo credentials, shown to the person who started the service on their machine.
        creds = dict(line.split(" ", 1) for line in credentials_file.read_text().splitlines())
        self.stdout.write(
            f"Back-office: {base_url}/admin/  user admin  password {creds['admin']}\n"
            f"API user:    demo  password {creds['demo']}\n"
            f"  curl -s -X POST {base_url}/api/v1/auth/token -H 'Content-Type: application/json' "
            f'-d \'{{"username": "demo", "password": "{creds["demo"]}"}}\'\n'
            f"(credentials kept in {credentials_file})\n"
            "A demo deposit on the dev chain:\n"
            "  .venv/bin/python manage.py demo_deposit --user demo --coin ETH --amount 1.5\n"
            f"  then GET {base_url}/api/v1/wallet/recharges as demo: pending, then credited within a minute"
        )
