"""Send a demo deposit on a local dev chain to a user's deposit address and follow it until it is credited."""

from __future__ import annotations

import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from recharges import demo
from recharges.models import RechargeStatus
from wallet_project import logging as wallet_logging
from wallet_project.errors import WalletError


def _describe(progress: demo.DemoProgress, sent: demo.DemoDeposit) -> str:
    if progress.status is None:
        if progress.mined_block is None:
            return "waiting for the next block of the dev chain"
        return f"in block {progress.mined_block}; waiting for the scanner's next tick"
    if progress.status == RechargeStatus.PENDING:
        return f"pending {progress.confirmations}/{progress.required_confirmations} confirmations"
    if progress.status == RechargeStatus.CONFIRMED:
        return (
            f"credited: {sent.amount.normalize():f} {sent.coin_id} added to {sent.username}'s available balance "
            f"({progress.recharge_no})"
        )
    if progress.status == RechargeStatus.REORGED:
        return "orphaned by a reorg: waiting for it to be mined again"
    return f"recorded as {RechargeStatus(progress.status).label}: not credited ({progress.recharge_no})"


class Command(BaseCommand):
    help = (
        "Send BTC, ETH, USDT-ERC20, TRX or USDT-TRC20 from its dev chain's funded TEST-ONLY account to USER's "
        "deposit address, then print its progress as the dev chain's blocks arrive: the scanner records it "
        "(pending n/N confirmations) and the confirmation job credits it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--user", required=True, help="username of the receiving user")
        parser.add_argument("--coin", required=True, help="BTC, ETH, USDT-ERC20, TRX or USDT-TRC20")
        parser.add_argument("--amount", required=True, help="amount in whole coins, e.g. 1.5")
        parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for the credit (default 300)")
        parser.add_argument("--no-wait", action="store_true", help="send and return at once")

    def handle(self, *args: object, **options: object) -> None:
        # Its output is text for a person: log records go to a file, not between its lines.
        with wallet_logging.console_logging_to_file(Path(settings.VAR_DIR) / "log" / "demo_deposit.log"):
            self._handle(options)

    def _handle(self, options: dict) -> None:
        try:
            sent = demo.demo_deposit_send_irreversible(
                username=str(options["user"]), coin_id=str(options["coin"]), amount=str(options["amount"])
            )
        except WalletError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"sent {sent.amount.normalize():f} {sent.coin_id} to {sent.address} ({sent.username})")
        self.stdout.write(f"tx {sent.tx_hash}; {sent.coin_id} needs {sent.required_confirmations} confirmations")
        if sent.amount < sent.min_recharge_amount:
            self.stderr.write(
                f"note: {sent.amount.normalize():f} is below the {sent.coin_id} minimum of "
                f"{sent.min_recharge_amount.normalize():f}: it will be recorded but not credited"
            )
        if options["no_wait"]:
            self.stdout.write(f"follow it: GET /api/v1/wallet/recharges as {sent.username}")
            return
        self._follow(sent, timeout=float(options["timeout"]))

    def _follow(self, sent: demo.DemoDeposit, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        shown = ""
        while True:
            try:
                progress = demo.demo_deposit_progress(deposit=sent)
            except WalletError as exc:
                raise CommandError(exc.message) from None
            line = _describe(progress, sent)
            if line != shown:
                self.stdout.write(line)
                self.stdout.flush()
                shown = line
            if progress.finished:
                return
            if time.monotonic() > deadline:
                raise CommandError(
                    f"not credited within {timeout:.0f} s (last: {shown}). Are the worker and beat running? "
                    "`bash scripts/run.sh` starts them; see var/log/worker.log. The deposit is not lost: the "
                    f"scanner records and credits it when it runs (GET /api/v1/wallet/recharges as {sent.username})."
                )
            time.sleep(0.5)
