"""
Four eyes on risky settings: a coin's thresholds, limits and fees, and the blacklist, change only
when a second person approves; the proposer cannot approve their own change; nothing changes
before the approval; every proposal and decision is kept with who, when, why, before and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.utils import timezone
from eth_utils import to_checksum_address

from coins import services as coins_services
from coins.models import CoinConfig
from controls import changes, proposals
from controls.models import BlacklistAddress, ChangeStatus, SettingsChange
from wallet_project.testing import admin_form_data

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = to_checksum_address("0x" + "5e" * 20)
TRON_ADDRESS = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def superuser(name: str):
    return get_user_model().objects.create_superuser(name, f"{name}@localhost", f"pw-{name}-1")


def logged_in(person) -> Client:
    client = Client()
    client.force_login(person)
    return client


@pytest.fixture
def root(db):
    return superuser("root")


@pytest.fixture
def second(db):
    return superuser("second")


def coin_edit(client: Client, coin: CoinConfig, **changed: str):
    url = f"/admin/coins/coinconfig/{coin.pk}/change/"
    form = admin_form_data(client.get(url).content.decode())
    return client.post(url, {**form, **changed, "_save": "Save"})


class TestCoinSettings:
    def test_a_threshold_edited_in_the_admin_becomes_a_proposal_and_nothing_changes_before_approval(self, root, second):
        eth = CoinConfig.objects.get(coin_id="ETH")

        response = coin_edit(
            logged_in(root),
            eth,
            withdraw_audit_threshold="20",
            withdraw_fee="0.004",
            coin_name="Ether (mainnet)",
            four_eyes_reason="gas costs doubled; review load too high",
        )

        stored = CoinConfig.objects.get(coin_id="ETH")
        assert response.status_code == 302
        assert (stored.withdraw_audit_threshold, stored.withdraw_fee) == (Decimal(10), Decimal("0.003"))
        assert stored.coin_name == "Ether (mainnet)"  # not a four-eyes setting: saved at once
        change = SettingsChange.objects.get()
        assert (change.kind, change.target, change.status, change.proposed_by) == (
            "coin_config",
            "ETH",
            ChangeStatus.PENDING,
            root,
        )
        assert change.before == {
            "withdraw_fee": "0.003000000000000000",
            "withdraw_audit_threshold": "10.000000000000000000",
        }
        assert change.after == {"withdraw_fee": "0.004", "withdraw_audit_threshold": "20"}
        assert change.reason == "gas costs doubled; review load too high"
        assert response["Location"] == f"/admin/controls/settingschange/{change.pk}/change/"

        with pytest.raises(proposals.Conflict) as own:
            proposals.change_approve(change_id=change.id, user=root)
        proposals.change_approve(change_id=change.id, user=second, remark="agreed with treasury")

        applied = CoinConfig.objects.get(coin_id="ETH")
        assert own.value.code == "own_proposal"
        assert (applied.withdraw_audit_threshold, applied.withdraw_fee) == (Decimal(20), Decimal("0.004"))
        change.refresh_from_db()
        assert (change.status, change.decided_by, change.decision_remark) == (
            ChangeStatus.APPLIED,
            second,
            "agreed with treasury",
        )
        assert change.proposed_at is not None and change.decided_at >= change.proposed_at

    def test_a_four_eyes_change_without_a_reason_is_refused_on_the_form(self, root):
        eth = CoinConfig.objects.get(coin_id="ETH")

        response = coin_edit(logged_in(root), eth, max_withdraw_amount="5000")

        assert response.status_code == 200
        assert "four_eyes_reason" in response.context["adminform"].form.errors
        assert not SettingsChange.objects.exists()
        assert CoinConfig.objects.get(coin_id="ETH").max_withdraw_amount == Decimal(1000)

    def test_every_field_of_the_one_list_is_proposed_not_saved(self, root):
        usdt = CoinConfig.objects.get(coin_id="USDT-ERC20")
        new = {
            "contract_address": "0x" + "a0" * 20,
            "required_confirmations": "30",
            "min_recharge_amount": "2",
            "max_recharge_amount": "9000000",
            "min_withdraw_amount": "20",
            "max_withdraw_amount": "400000",
            "withdraw_daily_limit": "900000",
            "withdraw_fee": "6",
            "withdraw_fee_type": "2",
            "withdraw_fee_rate": "0.002",
            "withdraw_audit_threshold": "9000",
            "withdraw_dual_audit_threshold": "90000",
            "risk_first_address_amount": "7000",
            "risk_velocity_amount": "15000",
            "sweep_threshold": "25",
        }
        assert set(new) == set(coins_services.FOUR_EYES_FIELDS)
        before = CoinConfig.objects.filter(pk=usdt.pk).values().get()

        coin_edit(logged_in(root), usdt, four_eyes_reason="yearly review", **new)

        assert CoinConfig.objects.filter(pk=usdt.pk).values().get() == before
        assert set(SettingsChange.objects.get().after) == set(new)

    def test_a_change_made_meanwhile_makes_the_proposal_stale_and_nothing_is_applied(self, root, second):
        change = changes.coin_settings_propose(
            coin_id="ETH", values={"withdraw_daily_limit": Decimal(3000)}, user=root, reason="more volume"
        )
        other = changes.coin_settings_propose(
            coin_id="BTC", values={"withdraw_daily_limit": Decimal(300)}, user=second, reason="more volume"
        )
        proposals.change_approve(change_id=other.id, user=root)
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_daily_limit=Decimal(2500))  # e.g. a data fix

        decided = proposals.change_approve(change_id=change.id, user=second)

        assert decided.status == ChangeStatus.STALE
        assert "withdraw_daily_limit changed since the proposal was made" in decided.decision_remark
        assert CoinConfig.objects.get(coin_id="ETH").withdraw_daily_limit == Decimal(2500)
        assert CoinConfig.objects.get(coin_id="BTC").withdraw_daily_limit == Decimal(300)

    def test_a_second_proposal_for_the_same_coin_waits_for_the_first_and_a_rejection_applies_nothing(
        self, root, second
    ):
        change = changes.coin_settings_propose(
            coin_id="ETH", values={"withdraw_fee": Decimal("0.01")}, user=root, reason="fees"
        )
        with pytest.raises(proposals.ProposalPending):
            changes.coin_settings_propose(
                coin_id="ETH", values={"withdraw_fee": Decimal("0.02")}, user=second, reason="x"
            )
        with pytest.raises(proposals.WalletError):
            proposals.change_reject(change_id=change.id, user=second, remark=" ")

        proposals.change_reject(change_id=change.id, user=second, remark="fee too high for users")

        change.refresh_from_db()
        assert (change.status, change.decided_by) == (ChangeStatus.REJECTED, second)
        assert CoinConfig.objects.get(coin_id="ETH").withdraw_fee == Decimal("0.003")
        assert (
            changes.coin_settings_propose(
                coin_id="ETH", values={"withdraw_fee": Decimal("0.005")}, user=second, reason="compromise"
            ).status
            == ChangeStatus.PENDING
        )

    def test_someone_without_the_coins_permission_can_neither_propose_nor_approve(self, root):
        ops = get_user_model().objects.create_user("ops", is_staff=True)
        ops.user_permissions.add(Permission.objects.get(codename="decide_settingschange"))
        change = changes.coin_settings_propose(
            coin_id="ETH", values={"withdraw_fee": Decimal("0.01")}, user=root, reason="fees"
        )

        with pytest.raises(proposals.NotPermitted):
            changes.coin_settings_propose(coin_id="BTC", values={"withdraw_fee": Decimal("0.01")}, user=ops, reason="x")
        with pytest.raises(proposals.NotPermitted):
            proposals.change_approve(change_id=change.id, user=get_user_model().objects.get(pk=ops.pk))

        assert CoinConfig.objects.get(coin_id="ETH").withdraw_fee == Decimal("0.003")


class TestBlacklistChanges:
    def test_an_address_proposed_in_the_admin_is_listed_once_a_second_person_approves(self, root, second):
        page = logged_in(root).get("/admin/controls/blacklistaddress/")
        proposed = logged_in(root).post(
            "/admin/controls/blacklistaddress/propose/",
            {"chain_id": "ETH", "addresses": OUTSIDE.lower() + "\n", "remark": "OFAC list 2026-12"},
        )
        listed_before = BlacklistAddress.objects.exists()
        change = SettingsChange.objects.get()
        proposals.change_approve(change_id=change.id, user=second)

        assert "Propose addresses to blacklist" in page.content.decode()
        assert proposed.status_code == 302 and listed_before is False
        entry = BlacklistAddress.objects.get()
        assert (entry.chain_id, entry.address, entry.reason) == ("ETH", OUTSIDE, "OFAC list 2026-12")
        assert (entry.proposed_by, entry.approved_by) == (root, second)

    def test_a_bad_address_in_the_admin_form_proposes_nothing(self, root):
        response = logged_in(root).post(
            "/admin/controls/blacklistaddress/propose/",
            {"chain_id": "ETH", "addresses": f"{OUTSIDE}\n0x1234\n", "remark": "list"},
        )

        assert response.status_code == 200 and "line 2" in response.content.decode()
        assert not SettingsChange.objects.exists()

    def test_a_removal_is_a_proposal_too(self, root, second):
        BlacklistAddress.objects.create(chain_id="ETH", address=OUTSIDE, reason="old case", create_time=timezone.now())
        entry = BlacklistAddress.objects.get()

        logged_in(root).post(
            "/admin/controls/blacklistaddress/",
            {"action": "propose_remove", "_selected_action": [entry.pk], "apply": "1", "remark": "case closed"},
        )
        still = BlacklistAddress.objects.exists()
        proposals.change_approve(change_id=SettingsChange.objects.get().id, user=second)

        assert still is True and not BlacklistAddress.objects.exists()
        assert SettingsChange.objects.get().before == {"listed": [["ETH", OUTSIDE, "old case"]]}


class TestBlacklistImport:
    def test_a_file_becomes_one_proposal_applied_on_approval(self, root, second, tmp_path):
        listing = tmp_path / "list.csv"
        listing.write_text(f"# sanctions feed\nETH,{OUTSIDE.lower()},mixer\n\nTRON,{TRON_ADDRESS}\nETH,{OUTSIDE}\n")

        call_command("blacklist_import", str(listing), "--by", "root", "--reason", "feed 2026-12-03")
        proposed = BlacklistAddress.objects.count()
        proposals.change_approve(change_id=SettingsChange.objects.get().id, user=second)

        assert proposed == 0
        assert set(BlacklistAddress.objects.values_list("chain_id", "address", "reason")) == {
            ("ETH", OUTSIDE, "mixer"),
            ("TRON", TRON_ADDRESS, "feed 2026-12-03"),
        }

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("ETH,0x1234", "line 3: An Ethereum address is 0x followed by 40 hexadecimal characters."),
            ("DOGE,D8vFz4p1L37jdg47HXKtSHA5uYLYxbGgPD", "line 3: No coin runs on chain 'DOGE'."),
            (f"TRON,{TRON_ADDRESS[:-1]}X", "line 3: Not a valid TRON address (bad checksum or format)."),
            ("just-an-address", "line 3: expected CHAIN,ADDRESS[,REASON], got 'just-an-address'"),
        ],
        ids=["bad-eth", "unknown-chain", "bad-checksum", "no-chain"],
    )
    def test_a_bad_line_refuses_the_whole_file_with_one_line(self, root, tmp_path, line, message):
        listing = tmp_path / "list.csv"
        listing.write_text(f"ETH,{OUTSIDE}\n# ok so far\n{line}\nTRON,{TRON_ADDRESS}\n")

        with pytest.raises(CommandError) as refused:
            call_command("blacklist_import", str(listing), "--by", "root", "--reason", "feed")

        assert str(refused.value) == message
        assert not SettingsChange.objects.exists() and not BlacklistAddress.objects.exists()

    @pytest.mark.mysql
    @pytest.mark.django_db(transaction=True)
    def test_the_command_exits_non_zero_with_one_line(self, tmp_path):
        listing = tmp_path / "list.csv"
        listing.write_text(f"ETH,{OUTSIDE}\nETH,0xnothex\n")
        url = settings.DATABASE_URL.rsplit("/", 1)[0] + "/" + connection.settings_dict["NAME"]

        result = subprocess.run(  # noqa: S603 - our own manage.py, a file of the test's
            [sys.executable, "manage.py", "blacklist_import", str(listing), "--by", "root", "--reason", "feed"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            "CommandError: line 2: An Ethereum address is 0x followed by 40 hexadecimal characters."
        ]
        assert not SettingsChange.objects.exists()

    def test_only_a_staff_account_with_the_permission_may_propose(self, db, tmp_path):
        get_user_model().objects.create_user("clerk", is_staff=True)
        listing = tmp_path / "list.csv"
        listing.write_text(f"ETH,{OUTSIDE}\n")

        with pytest.raises(
            CommandError, match=r"Proposing this change needs the permission controls\.manage_blacklist"
        ):
            call_command("blacklist_import", str(listing), "--by", "clerk", "--reason", "feed")
        with pytest.raises(CommandError, match="no active staff account"):
            call_command("blacklist_import", str(listing), "--by", "nobody", "--reason", "feed")

        assert not BlacklistAddress.objects.exists()
