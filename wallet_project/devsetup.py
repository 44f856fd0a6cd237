"""
What the run command sets up so that a newcomer sees the whole loop (development only; demo_setup).

- a demo back-office admin and a demo API user (passwords in var/demo-credentials.txt);
- the HD seeds (deposit and hot) of every chain, under the development KEK file;
- a hot address of the withdraw pool on every chain, and a gas station (the pool that will pay
  gas and energy for sweeps) on ETH and TRON: BTC sweeps pay their own fee from their inputs;
- those addresses funded on the dev chains from their TEST-ONLY faucets (chains.devsend), topped
  up to the same amounts on every start, waiting until the funding is mined; each chain's scanner
  is started first, so the funding is seen and booked to the house as a treasury receipt;
- if the dev chains report a chain that came back new, what the database remembers of the old
  one is reset (scan cursor, recent blocks, nonces and settled payouts' nonces, pending deposits),
  loudly.

Each step is idempotent: a second run creates nothing and sends nothing that is already there.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from io import StringIO
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from addresses import hd
from addresses import selectors as addresses_selectors
from chains import devsend
from chains import services as chains_services
from coins import selectors as coins_selectors
from recharges import services as recharges_services
from withdrawals import payout as withdrawals_payout

# What each pool's address holds after every start of the run command, in whole coins.
HOT_TARGETS = {
    "BTC": [("BTC", "10")],
    "ETH": [("ETH", "100"), ("USDT-ERC20", "100000")],
    "TRON": [("TRX", "100000"), ("USDT-TRC20", "100000")],
}
GAS_TARGETS = {"ETH": [("ETH", "10")], "TRON": [("TRX", "10000")]}
FUNDING_WAIT_SECONDS = 60.0


class DevSetupError(Exception):
    """A step of the development set-up failed; the message says what to do."""


@dataclass
class Funded:
    chain_id: str
    pool: str
    address: str
    holdings: list[tuple[str, Decimal]] = field(default_factory=list)
    sent: int = 0


def demo_users_ensure(*, credentials_file: Path) -> dict[str, str]:
    """Create (once) the demo admin and API user; return {username: password} from the credentials file."""
    User = get_user_model()
    with transaction.atomic(durable=True):
        if not User.objects.filter(username="admin").exists():
            admin_password = secrets.token_urlsafe(12)
            demo_password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", "admin@localhost", admin_password)
            User.objects.create_user("demo", "demo@localhost", demo_password)
            credentials_file.write_text(f"admin {admin_password}\ndemo {demo_password}\n")
            credentials_file.chmod(0o600)
    if not credentials_file.exists():
        raise DevSetupError(f"demo users exist but {credentials_file} is gone; reset with changepassword")
    return dict(line.split(" ", 1) for line in credentials_file.read_text().splitlines() if " " in line)


def hd_seeds_ensure() -> None:
    """Create the deposit and hot HD seeds of every chain that lacks one (development KEK, no backup file)."""
    for chain_id in hd.CHAINS:
        for purpose in ("deposit", "hot"):
            try:
                call_command("create_hd_wallet", chain=chain_id, purpose=purpose, stdout=StringIO(), stderr=StringIO())
            except CommandError as error:
                if "already has" not in str(error):
                    raise


def hot_addresses_ensure() -> list[tuple[str, str, str]]:
    """Derive the withdraw pool's hot address of every chain and the gas stations, if missing; return them."""
    pools = [(chain_id, settings.WITHDRAW_HOT_WALLET_TYPE) for chain_id in hd.CHAINS]
    pools += [(chain_id, settings.GAS_STATION_WALLET_TYPE) for chain_id in GAS_TARGETS]
    found = []
    for chain_id, pool in pools:
        if not addresses_selectors.hot_addresses(chain_id=chain_id, wallet_type=pool).exists():
            call_command("create_hot_address", chain=chain_id, wallet_type=pool, count=1, stdout=StringIO())
        row = addresses_selectors.hot_addresses(chain_id=chain_id, wallet_type=pool).first()
        found.append((chain_id, pool, row.address))
    return found


def fresh_chains_reset(*, record_path: Path, say: Callable[[str], None]) -> list[str]:
    """
    Reset what the database remembers of each dev chain that came back new; return those chains.

    The dev chains name them in their record ("fresh_chains"); the name is removed once reset.
    """
    try:
        recorded = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return []
    fresh = [c for c in recorded.get("fresh_chains") or [] if c in hd.CHAINS]
    now = timezone.now()
    for chain_id in fresh:
        blocks, orphaned = recharges_services.scan_state_forget(chain_id=chain_id, now=now)
        nonces = chains_services.nonces_forget(chain_id=chain_id)
        withdrawals_payout.payout_nonces_forget(chain_id=chain_id)
        say(
            f"!! {chain_id}: the dev chain is NEW (var/devchain/ was emptied): the scanner starts over on it "
            f"({blocks} remembered blocks and {nonces} nonces forgotten, {orphaned} pending deposits marked "
            "orphaned). Deposits credited on the old chain stay in the ledger."
        )
    if fresh:
        recorded["fresh_chains"] = []
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(recorded, indent=2) + "\n")
        tmp.replace(record_path)
    return fresh


def hot_wallets_fund(*, hot: list[tuple[str, str, str]], record_path: Path) -> list[Funded]:
    """
    Top the hot addresses up on the dev chains from their faucets and wait until it is mined.

    :raises devsend.NotADevChain: the dev chains are not running (or a node is not a dev chain).
    :raises devsend.DevSendError: a faucet cannot pay, or the funding was not mined in time.
    """
    recorded = devsend.devchain_read(path=record_path)
    funding_record = record_path.with_name("devchain-funding.json")
    targets = {settings.WITHDRAW_HOT_WALLET_TYPE: HOT_TARGETS, settings.GAS_STATION_WALLET_TYPE: GAS_TARGETS}
    chains: dict[str, devsend.DevChain] = {}
    pending: dict[str, list[str]] = {}
    funded = []
    for chain_id, pool, address in hot:
        if chain_id not in chains:
            chains[chain_id] = devsend.DevChain(chain_id=chain_id, recorded=recorded, btc_rpc_url=settings.BTC_RPC_URL)
            # The scanner starts before the funding (if it never ran), so that it sees the funding
            # and books it to the house as a treasury receipt: the ledger then accounts for it.
            try:
                recharges_services.scan_cursor_ensure(chain_id=chain_id)
            except recharges_services.ADAPTER_ERRORS as exc:
                raise devsend.NotADevChain(f"the {chain_id} node cannot be read: {type(exc).__name__}") from None
        entry = Funded(chain_id=chain_id, pool=pool, address=address)
        for coin_id, amount in targets[pool].get(chain_id, []):
            coin = coins_selectors.coin_get(coin_id=coin_id)
            target = coins_selectors.amount_to_base_units(coin=coin, amount=Decimal(amount))
            sent = devsend.top_up(
                chain=chains[chain_id],
                address=address,
                target_base_units=target,
                contract=coin.contract_address or None,
                record_path=funding_record,
            )
            if sent is not None:
                pending.setdefault(chain_id, []).append(sent.tx_hash)
                entry.sent += 1
            entry.holdings.append((coin_id, Decimal(amount)))
        funded.append(entry)
    block_seconds = float(recorded.get("block_seconds") or 2)
    for chain_id, tx_hashes in pending.items():
        chains[chain_id].wait_mined(tx_hashes, timeout=max(FUNDING_WAIT_SECONDS, 10 * block_seconds))
    return funded


def _amount(value: Decimal) -> str:
    return f"{value.normalize():f}"


def instructions(
    *, base_url: str, credentials: dict[str, str], credentials_file: Path, funded: list[Funded], note: str = ""
) -> str:
    """The newcomer's text: what runs, what was funded, how to log in, deposit and withdraw."""
    eth = coins_selectors.coin_get(coin_id="ETH")
    lines = []
    if funded:
        lines.append("Hot wallets, funded on the dev chains from their TEST-ONLY faucets (topped up on every start):")
        for entry in funded:
            holdings = ", ".join(f"{_amount(amount)} {coin_id}" for coin_id, amount in entry.holdings)
            lines.append(f"  {entry.chain_id:<5} {entry.pool:<9} {entry.address}  {holdings}")
    if note:
        lines.append(note)
    demo = credentials.get("demo", "?")
    outside = devsend.outside_address("ETH")
    lines += [
        "",
        f"Back-office: {base_url}/admin/   user admin  password {credentials.get('admin', '?')}",
        f"API user:    demo  password {demo}   (kept in {credentials_file})",
        f"API docs:    {base_url}/api/docs",
        "",
        "1. A deposit, watched from sent to credited (BTC, ETH, USDT-ERC20, TRX or USDT-TRC20):",
        "     .venv/bin/python manage.py demo_deposit --user demo --coin ETH --amount 20",
        "2. A token for the API, then the demo user's balances:",
        f"     TOKEN=$(curl -s -X POST {base_url}/api/v1/auth/token -H 'Content-Type: application/json' \\",
        f'       -d \'{{"username": "demo", "password": "{demo}"}}\' | python3 -c '
        "'import json,sys; print(json.load(sys.stdin)[\"access\"])')",
        f'     curl -s {base_url}/api/v1/balances -H "Authorization: Bearer $TOKEN"',
        f"3. A withdrawal, paid on chain by the ETH hot wallet (up to {_amount(eth.withdraw_audit_threshold)} ETH it "
        "is approved at once):",
        f'     curl -s -X POST {base_url}/api/v1/wallet/withdrawals -H "Authorization: Bearer $TOKEN" \\',
        "       -H 'Content-Type: application/json' \\",
        f'       -d \'{{"coin": "ETH", "to_address": "{outside}", "amount": "1.5", '
        '"idempotency_key": "first-withdrawal"}\'',
        f'     curl -s {base_url}/api/v1/wallet/withdrawals -H "Authorization: Bearer $TOKEN"'
        "   # status 4 processing, then 5 completed",
        f"4. Above {_amount(eth.withdraw_audit_threshold)} ETH it waits for an auditor: in the back-office, "
        'Withdrawals, tick it, action "Approve the selected withdrawals".',
    ]
    return "\n".join(lines)
