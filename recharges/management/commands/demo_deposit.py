"""Send a demo deposit (ETH or the test USDT) on the local EVM dev chain to a user's deposit address."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from recharges import demo
from recharges import selectors as recharges_selectors
from wallet_project.errors import WalletError


class Command(BaseCommand):
    help = (
        "Send ETH or USDT-ERC20 from the dev chain's funded TEST-ONLY account to USER's deposit address and mine "
        "its confirmations; the scanner then records it (pending) and the confirmation job credits it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="username of the receiving user")
        parser.add_argument("--coin", required=True, help="ETH or USDT-ERC20 (the coins of the EVM dev chain)")
        parser.add_argument("--amount", required=True, help="amount in whole coins, e.g. 1.5")

    def handle(self, *args: object, **options: object) -> None:
        try:
            sent = demo.demo_deposit_send_irreversible(
                username=str(options["user"]), coin_id=str(options["coin"]), amount=str(options["amount"])
            )
        except WalletError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"sent {sent.amount.normalize():f} {sent.coin_id} to {sent.address} ({sent.username})")
        self.stdout.write(f"tx {sent.tx_hash} in block {sent.block_number} of the dev chain at {sent.node_url}")
        self.stdout.write(
            f"mined {sent.mined_blocks} more block(s): {sent.coin_id} needs {sent.required_confirmations} confirmations"
        )
        self.stdout.write(
            f"watch it: GET /api/v1/wallet/recharges as {sent.username} -> status 1 (pending) once the scanner's "
            f"next tick sees it, 2 (credited) after the confirmation job (every {settings.SCAN_INTERVAL_SECONDS} s)"
        )
        if sent.amount < sent.min_recharge_amount:
            self.stderr.write(
                f"note: {sent.amount.normalize():f} is below the {sent.coin_id} minimum of "
                f"{sent.min_recharge_amount.normalize():f}: it will be recorded but not credited"
            )
        if "ETH" not in recharges_selectors.chain_tips():
            self.stderr.write(
                "note: the ETH scanner has not run yet; its first tick starts at the node's tip, so set "
                "SCAN_START_HEIGHTS=ETH:0 (or start worker and beat before sending) to see this deposit"
            )
