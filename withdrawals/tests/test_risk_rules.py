"""
The withdrawal risk rules (withdrawals.risk_rules): each rule's verdict with its positive control,
the address book's cooling period to the second, review below the audit threshold, refusals with
their own code, verdicts recorded on the withdrawal and shown to the auditor.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from eth_utils import to_checksum_address
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from addresses.models import AddressType, WalletAddress
from assets import services as assets_services
from assets.models import Balance, BusinessType
from coins.models import CoinConfig
from controls import proposals
from controls import services as controls_services
from monitoring.models import Alert, HotBalance, Severity
from recharges.models import ScanCursor
from utxos.models import BtcUtxo
from wallet_project import roles
from wallet_project.errors import WalletError
from withdrawals import services as withdrawals_services
from withdrawals.models import RiskOutcome, RiskStage, WithdrawRecord, WithdrawRiskVerdict, WithdrawStatus

pytestmark = pytest.mark.django_db

OUTSIDE = to_checksum_address("0x" + "5e" * 20)
ELSEWHERE = to_checksum_address("0x" + "6f" * 20)
BTC_OUTSIDE = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
URL = "/api/v1/wallet/withdrawals"
COOLING = 86400


def fund(user, amount: str = "1000", coin_id: str = "ETH") -> None:
    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id=coin_id),
        amount=Decimal(amount),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{user.id}-{coin_id}-{amount}",
    )


def apply(user, amount: str, *, key: str, to: str = OUTSIDE, coin_id: str = "ETH", now=None) -> WithdrawRecord:
    return withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id=coin_id, to_address=to, amount=amount, idempotency_key=key, now=now
    )


def verdict(record: WithdrawRecord, rule: str, stage: RiskStage = RiskStage.APPLY) -> WithdrawRiskVerdict:
    return WithdrawRiskVerdict.objects.get(withdraw=record, rule=rule, stage=stage)


def superuser(name: str):
    return get_user_model().objects.create_superuser(name, f"{name}@localhost", f"pw-{name}-1")


def blacklist(chain_id: str, address: str) -> None:
    """List an address the way production does: one person proposes, a second approves."""
    entries = [controls_services.blacklist_entry_check(chain_id=chain_id, address=address, reason="case 7")]
    change = controls_services.blacklist_propose_add(entries=entries, user=superuser("prop"), reason="case 7")
    proposals.change_approve(change_id=change.id, user=superuser("appr"))


def refused_code(user, amount: str, *, key: str, **kwargs) -> tuple[str, str | None]:
    with pytest.raises(WalletError) as refused:
        apply(user, amount, key=key, **kwargs)
    return refused.value.code, refused.value.field


@pytest.fixture
def trader(db):
    person = get_user_model().objects.create_user("trader-tom")
    fund(person)
    fund(person, "100000", coin_id="USDT-ERC20")
    return person


class TestBlacklist:
    def test_a_withdrawal_to_a_blacklisted_address_is_refused_with_its_own_code_and_an_alert(self, trader):
        blacklist("ETH", OUTSIDE.lower())  # listed in its canonical (EIP-55) form whatever the case given

        code = refused_code(trader, "1", key="a")
        token_code = refused_code(trader, "10", key="b", coin_id="USDT-ERC20")  # the chain's every coin

        assert code == token_code == ("address_blacklisted", "to_address")
        assert not WithdrawRecord.objects.exists()
        assert Balance.objects.get(user=trader, coin_id="ETH").frozen == 0
        alert = Alert.objects.get(kind="ABNORMAL_TRANSACTION", subject=f"user {trader.id}")
        assert alert.severity == Severity.CRITICAL and OUTSIDE in alert.message

    def test_positive_control_another_address_passes(self, trader):
        blacklist("ETH", OUTSIDE)

        record = apply(trader, "1", key="a", to=ELSEWHERE)

        assert record.status == WithdrawStatus.APPROVED
        assert verdict(record, "blacklist").outcome == RiskOutcome.PASS

    def test_the_api_answers_400_with_the_field_and_code(self, trader):
        blacklist("ETH", OUTSIDE)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(trader).access_token}")

        response = client.post(
            URL, {"coin": "ETH", "to_address": OUTSIDE, "amount": "1", "idempotency_key": "k"}, format="json"
        )

        assert response.status_code == 400
        body = response.json()
        assert body["code"] == "address_blacklisted" and list(body["fields"]) == ["to_address"]

    def test_an_address_blacklisted_after_the_apply_is_rejected_at_approval_and_unfrozen(self, trader, staff_roles):
        record = apply(trader, "50", key="a")  # above the audit threshold: pending review
        blacklist("ETH", OUTSIDE)
        auditor = get_user_model().objects.create_user("ann", is_staff=True)
        auditor.groups.add(Group.objects.get(name=roles.AUDITORS))

        decided = withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id)

        assert decided.status == WithdrawStatus.REJECTED
        assert decided.audit_remark == "Withdrawals to this address are not allowed."
        assert Balance.objects.get(user=trader, coin_id="ETH").frozen == 0
        assert record.audit_logs.order_by("-id").values_list("action", flat=True)[0] == "risk_refuse"
        assert verdict(record, "blacklist", RiskStage.APPROVE).outcome == RiskOutcome.REFUSE
        assert verdict(record, "blacklist", RiskStage.APPLY).outcome == RiskOutcome.PASS


class TestAddressBook:
    @pytest.fixture
    def t0(self):
        return timezone.now().replace(microsecond=0)

    def test_positive_control_with_the_switch_off_any_address_passes(self, trader):
        record = apply(trader, "1", key="a")

        assert record.status == WithdrawStatus.APPROVED
        assert verdict(record, "address_book").outcome == RiskOutcome.PASS

    def test_with_the_switch_on_an_address_not_in_the_book_is_refused(self, trader, t0):
        controls_services.book_switch_set(user_id=trader.id, book_only=True, now=t0)

        assert refused_code(trader, "1", key="a", now=t0) == ("address_not_in_book", "to_address")

    def test_a_new_entry_is_usable_only_after_its_cooling_period_to_the_second(self, trader, t0, settings):
        settings.RISK_ADDRESS_BOOK_COOLING_SECONDS = COOLING
        controls_services.book_switch_set(user_id=trader.id, book_only=True, now=t0)
        entry = controls_services.book_entry_add(user_id=trader.id, coin_id="USDT-ERC20", address=OUTSIDE, now=t0)

        early = refused_code(trader, "1", key="a", now=t0 + timedelta(seconds=COOLING - 1))
        record = apply(trader, "1", key="b", now=t0 + timedelta(seconds=COOLING))

        assert entry.usable_at == t0 + timedelta(seconds=COOLING)
        assert early == ("address_book_cooling", "to_address")
        assert record.status == WithdrawStatus.APPROVED  # an ETH entry added under a token of the chain
        assert verdict(record, "address_book").outcome == RiskOutcome.PASS

    def test_switching_off_takes_the_cooling_period_too(self, trader, t0, settings):
        settings.RISK_ADDRESS_BOOK_COOLING_SECONDS = COOLING
        controls_services.book_switch_set(user_id=trader.id, book_only=True, now=t0)
        off = controls_services.book_switch_set(user_id=trader.id, book_only=False, now=t0)

        early = refused_code(trader, "1", key="a", now=t0 + timedelta(seconds=COOLING - 1))
        record = apply(trader, "1", key="b", now=t0 + timedelta(seconds=COOLING))

        assert (off.book_only, off.release_at) == (True, t0 + timedelta(seconds=COOLING))
        assert early == ("address_not_in_book", "to_address")
        assert record.status == WithdrawStatus.APPROVED

    def test_the_api_adds_lists_and_removes_entries_of_the_caller_only(self, trader, other_user, settings):
        settings.RISK_ADDRESS_BOOK_COOLING_SECONDS = COOLING
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(trader).access_token}")
        other = APIClient()
        other.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(other_user).access_token}")

        added = client.post(
            "/api/v1/wallet/address-book", {"coin": "ETH", "address": OUTSIDE.lower(), "label": "cold"}, format="json"
        )
        again = client.post("/api/v1/wallet/address-book", {"coin": "ETH", "address": OUTSIDE}, format="json")
        bad = client.post("/api/v1/wallet/address-book", {"coin": "ETH", "address": "0x12"}, format="json")
        listed = client.get("/api/v1/wallet/address-book").json()
        stolen = other.delete(f"/api/v1/wallet/address-book/{added.json()['id']}")
        switched = client.put("/api/v1/wallet/address-book/settings", {"book_only": True}, format="json")
        removed = client.delete(f"/api/v1/wallet/address-book/{added.json()['id']}")

        assert added.status_code == 201
        assert added.json()["address"] == OUTSIDE and added.json()["chain_id"] == "ETH"
        assert again.status_code == 409 and again.json()["code"] == "address_book_duplicate"
        assert bad.status_code == 400 and list(bad.json()["fields"]) == ["address"]
        assert [row["label"] for row in listed] == ["cold"]
        assert stolen.status_code == 404
        assert switched.json() == {"book_only": True, "release_at": None}
        assert removed.status_code == 204 and client.get("/api/v1/wallet/address-book").json() == []


class TestFirstAddress:
    def test_above_the_amount_to_an_address_never_paid_goes_to_review_below_the_audit_threshold(self, trader):
        record = apply(trader, "9", key="a")  # ETH: first-address amount 8, audit threshold 10

        assert record.status == WithdrawStatus.PENDING_REVIEW
        assert verdict(record, "first_address").outcome == RiskOutcome.REVIEW
        assert record.audit_logs.get(action="apply").remark == "held for review by risk rules: first_address"

    def test_positive_control_an_address_a_completed_withdrawal_paid_passes(self, trader, other_user):
        fund(other_user)
        paid = apply(other_user, "1", key="p")
        WithdrawRecord.objects.filter(pk=paid.pk).update(status=WithdrawStatus.COMPLETED)

        record = apply(trader, "9", key="a")
        at_threshold = apply(trader, "8", key="b", to=ELSEWHERE)

        assert (record.status, at_threshold.status) == (WithdrawStatus.APPROVED, WithdrawStatus.APPROVED)
        assert verdict(record, "first_address").detail == "the destination was paid before"
        assert verdict(at_threshold, "first_address").outcome == RiskOutcome.PASS

    def test_a_coin_without_the_amount_has_the_rule_off(self, trader):
        CoinConfig.objects.filter(coin_id="ETH").update(risk_first_address_amount=None)

        assert apply(trader, "9", key="a").status == WithdrawStatus.APPROVED


class TestVelocity:
    def test_more_withdrawals_than_the_count_in_the_window_go_to_review(self, trader, settings):
        settings.RISK_VELOCITY_MAX_COUNT = 3

        first = [apply(trader, "0.1", key=f"k{n}") for n in range(3)]
        fourth = apply(trader, "0.1", key="k3")

        assert [r.status for r in first] == [WithdrawStatus.APPROVED] * 3  # positive control: up to the count
        assert fourth.status == WithdrawStatus.PENDING_REVIEW
        assert "more than 3 withdrawals" in verdict(fourth, "velocity").detail

    def test_withdrawals_older_than_the_window_do_not_count(self, trader, settings):
        settings.RISK_VELOCITY_MAX_COUNT = 3
        settings.RISK_VELOCITY_WINDOW_MINUTES = 60
        old = [apply(trader, "0.1", key=f"k{n}") for n in range(3)]
        WithdrawRecord.objects.filter(id__in=[r.id for r in old]).update(
            create_time=timezone.now() - timedelta(minutes=61)
        )

        assert apply(trader, "0.1", key="k3").status == WithdrawStatus.APPROVED

    def test_more_value_than_the_coins_amount_in_the_window_goes_to_review(self, trader):
        CoinConfig.objects.filter(coin_id="ETH").update(risk_velocity_amount=Decimal(5))

        first = apply(trader, "3", key="a")
        second = apply(trader, "2", key="b")  # 5 in all: not more than 5
        third = apply(trader, "0.5", key="c")

        assert (first.status, second.status) == (WithdrawStatus.APPROVED, WithdrawStatus.APPROVED)
        assert third.status == WithdrawStatus.PENDING_REVIEW
        assert verdict(third, "velocity").detail.endswith("more than 5 ETH")


class TestHotShare:
    @pytest.fixture
    def hot_eth(self, db):
        """A withdraw-pool hot address whose last reading was 10 ETH."""
        WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.HOT, wallet_type="withdraw",
            address=to_checksum_address("0x" + "a1" * 20),
        )  # fmt: skip
        HotBalance.objects.create(
            chain_id="ETH",
            address=to_checksum_address("0x" + "a1" * 20),
            coin_id="ETH",
            balance=Decimal(10),
            read_at=timezone.now(),
        )

    def test_more_than_the_share_of_the_hot_balance_goes_to_review_with_an_alert(self, trader, hot_eth, settings):
        settings.RISK_HOT_SHARE_MAX = Decimal("0.5")

        record = apply(trader, "6", key="a")

        assert record.status == WithdrawStatus.PENDING_REVIEW
        assert verdict(record, "hot_share").outcome == RiskOutcome.REVIEW
        alert = Alert.objects.get(kind="ABNORMAL_TRANSACTION", subject=f"withdrawal {record.withdraw_no}")
        assert alert.severity == Severity.CRITICAL and "hot_share" in alert.message

    def test_positive_control_up_to_the_share_passes_without_an_alert(self, trader, hot_eth, settings):
        settings.RISK_HOT_SHARE_MAX = Decimal("0.5")

        record = apply(trader, "5", key="a")

        assert record.status == WithdrawStatus.APPROVED
        assert verdict(record, "hot_share").detail == "at most 50% of the hot balance of 10 ETH"
        assert not Alert.objects.filter(kind="ABNORMAL_TRANSACTION").exists()

    def test_btcs_hot_balance_is_read_from_the_utxo_set(self, trader, settings):
        settings.RISK_HOT_SHARE_MAX = Decimal("0.5")
        fund(trader, "10", coin_id="BTC")
        hot = WalletAddress.objects.create(
            coin_id="BTC", coin_name="BTC", chain_id="BTC", address_type=AddressType.HOT, wallet_type="withdraw",
            address="bcrt1qhotpool0000000000000000000000000000000",
        )  # fmt: skip
        ScanCursor.objects.create(chain_id="BTC", height=200)
        for vout, sats in enumerate((100_000_000, 60_000_000)):  # 1.6 BTC unspent in the pool
            BtcUtxo.objects.create(
                txid="ab" * 32, vout=vout, value_sats=sats, script_hex="0014", address=hot, kind=AddressType.HOT,
                wallet_type="withdraw", block_height=100, block_hash="cd" * 32,
            )  # fmt: skip
        BtcUtxo.objects.create(
            txid="ef" * 32, vout=0, value_sats=500_000_000, script_hex="0014", address=hot, kind=AddressType.HOT,
            wallet_type="withdraw", block_height=90, block_hash="cd" * 32, spent_txid="01" * 32, spent_height=95,
            spent_hash="cd" * 32,
        )  # fmt: skip

        within = apply(trader, "0.8", key="a", coin_id="BTC", to=BTC_OUTSIDE)
        above = apply(trader, "0.81", key="b", coin_id="BTC", to=BTC_OUTSIDE)

        assert verdict(within, "hot_share").detail == "at most 50% of the hot balance of 1.6 BTC"
        assert verdict(above, "hot_share").outcome == RiskOutcome.REVIEW
        assert above.status == WithdrawStatus.PENDING_REVIEW

    def test_an_unknown_hot_balance_is_said_so(self, trader):
        record = apply(trader, "6", key="a")

        assert verdict(record, "hot_share").detail == "the hot balance is unknown (no reading yet)"


class TestRecordedAndShown:
    def test_every_rules_verdict_is_recorded_at_apply_and_at_approval(self, trader, staff_roles):
        record = apply(trader, "50", key="a")
        auditor = get_user_model().objects.create_user("ann", is_staff=True)

        withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id)

        rows = list(
            WithdrawRiskVerdict.objects.filter(withdraw=record).order_by("id").values_list("stage", "rule", "outcome")
        )
        rules = ["blacklist", "address_book", "first_address", "velocity", "hot_share"]
        assert [r[:2] for r in rows] == [(RiskStage.APPLY, r) for r in rules] + [(RiskStage.APPROVE, r) for r in rules]
        assert WithdrawRiskVerdict.objects.filter(rule="first_address", outcome=RiskOutcome.REVIEW).count() == 2

    def test_the_auditor_sees_the_verdicts_in_the_queue_and_on_the_page(self, trader, staff_roles):
        record = apply(trader, "9", key="a")
        ann = get_user_model().objects.create_user("ann", is_staff=True)
        ann.groups.add(Group.objects.get(name=roles.AUDITORS))
        client = Client()
        client.force_login(ann)

        queue = client.get("/admin/withdrawals/withdrawrecord/review/").content.decode()
        page = client.get(f"/admin/withdrawals/withdrawrecord/{record.pk}/change/").content.decode()
        verdicts = client.get("/admin/withdrawals/withdrawriskverdict/?rule=first_address&outcome=REVIEW")

        assert 'data-code="rule_first_address"' in queue
        assert "Hold for review: first_address — first withdrawal to an address never paid before, above 8 ETH" in queue
        assert "Risk rules passed at apply: blacklist, address_book, velocity, hot_share" in queue
        assert "rule_first_address" in page and "never paid before" in page
        assert verdicts.status_code == 200 and record.withdraw_no in verdicts.content.decode()

    def test_the_user_sees_why_a_withdrawal_waits(self, trader):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(trader).access_token}")
        record = apply(trader, "9", key="a")
        paid = apply(trader, "1", key="b", to=ELSEWHERE)

        listed = {row["withdraw_no"]: row for row in client.get(URL).json()["results"]}

        assert listed[record.withdraw_no]["waiting_reason"] == "Waiting for review by the exchange."
        assert listed[paid.withdraw_no]["waiting_reason"] is None
