"""
The auditors' review in the back office: the queue, the panel on a withdrawal's page, the
approve / reject buttons, and what the pages around them say.
"""

from __future__ import annotations

import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from eth_utils import to_checksum_address

from assets import services as assets_services
from assets.models import BusinessType
from coins.models import CoinConfig, Switch
from recharges.models import RechargeRecord, RechargeStatus
from wallet_project import roles
from withdrawals import review
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus

OUTSIDE = to_checksum_address("0x" + "5e" * 20)
ELSEWHERE = to_checksum_address("0x" + "6f" * 20)
QUEUE = "/admin/withdrawals/withdrawrecord/review/"
ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


def fund(user, amount: str = "1000", coin_id: str = "ETH") -> None:
    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id=coin_id),
        amount=Decimal(amount),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{user.id}-{coin_id}-{amount}",
    )


def apply(user, amount: str, *, key: str, to: str = OUTSIDE, coin_id: str = "ETH") -> WithdrawRecord:
    return withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id=coin_id, to_address=to, amount=amount, idempotency_key=key
    )


def staff(name: str, group: str):
    person = get_user_model().objects.create_user(name, password=f"pw-{name}-1", is_staff=True)
    person.groups.add(Group.objects.get(name=group))
    return person


def logged_in(person) -> Client:
    client = Client()
    client.force_login(person)
    return client


def page(record: WithdrawRecord) -> str:
    return f"/admin/withdrawals/withdrawrecord/{record.pk}/change/"


def decide_url(record: WithdrawRecord, decision: str) -> str:
    return f"/admin/withdrawals/withdrawrecord/{record.pk}/{decision}/"


def text(html: bytes) -> str:
    """The page as a person reads it: tags dropped, whitespace collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html.decode())).strip()


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def trader(db):
    person = get_user_model().objects.create_user("trader-tom")
    fund(person)
    return person


@pytest.fixture
def ann(staff_roles):
    return staff("ann", roles.AUDITORS)


@pytest.fixture
def bob(staff_roles):
    return staff("bob", roles.AUDITORS)


@pytest.fixture
def otto(staff_roles):
    return staff("otto", roles.OPERATORS)


class TestQueue:
    def test_lists_withdrawals_pending_review_oldest_first_with_what_to_judge_them_by(self, trader, ann):
        # First, before the large ones count against the user's velocity (RISK_VELOCITY_*).
        apply(trader, "2", key="small")  # below the threshold: approved at once, not in the queue
        large = apply(trader, "150.123456789012345678", key="large")  # two auditors
        medium = apply(trader, "50.5", key="medium", to=ELSEWHERE)
        WithdrawRecord.objects.filter(pk=large.pk).update(create_time=timezone.now() - timezone.timedelta(hours=3))

        response = logged_in(ann).get(QUEUE)

        body = response.content.decode()
        rows = re.findall(r'data-withdraw-no="([^"]+)"', body)
        assert response.status_code == 200
        assert rows == [large.withdraw_no, medium.withdraw_no]
        assert "trader-tom" in body and f">{trader.id}<" not in body
        assert ">150.123456789012345678<" in body and ">50.5<" in body
        assert "000000000000<" not in body  # no DECIMAL(38,18) padding
        assert "0 of 2" in text(response.content) and "0 of 1" in text(response.content)
        assert "Two auditors required" in body and "Above the audit threshold (10 ETH)" in body
        assert body.count("First withdrawal of this user to this address") == 2

    def test_says_whether_any_users_withdrawal_paid_the_address_before(self, trader, ann):
        other = get_user_model().objects.create_user("other-olga")
        fund(other)
        paid = apply(other, "1", key="paid")  # approved at once
        WithdrawRecord.objects.filter(pk=paid.pk).update(status=WithdrawStatus.COMPLETED, complete_time=timezone.now())
        known = apply(trader, "20", key="known")  # to the address olga's withdrawal paid
        fresh = apply(trader, "20", key="fresh", to=ELSEWHERE)

        rows = {row.record.pk: row for row in review.review_rows(list(review.review_queue()))}

        assert (rows[known.pk].paid_before.count, rows[fresh.pk].paid_before.count) == (1, 0)
        # Paid before, but never by this user: still the user's first withdrawal there.
        assert "first_to_address" in {v.code for v in rows[known.pk].verdicts}
        body = logged_in(ann).get(QUEUE).content.decode()
        assert "yes, 1 time" in body and "never" in body

    def test_reads_a_page_in_a_fixed_number_of_queries(self, trader, django_assert_max_num_queries):
        for n in range(8):
            apply(trader, "20", key=f"w{n}", to=to_checksum_address(f"0x{n:040x}"))

        # Paid-to, paid-by-user, holds; the risk rules' recorded verdicts, tripped breakers, blacklist hits.
        with django_assert_max_num_queries(7):
            rows = review.review_rows(list(review.review_queue()))

        assert len(rows) == 8

    def test_warns_of_a_held_user_and_a_coin_switched_off(self, trader):
        record = apply(trader, "50", key="w")
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_enabled=Switch.DISABLED)

        (row,) = review.review_rows(list(review.review_queue()))

        assert row.record == record
        assert [v.code for v in row.verdicts][:2] == ["coin_withdrawals_off", "first_to_address"]

    def test_is_shown_to_whoever_may_view_withdrawals_and_nobody_else(self, trader, otto):
        apply(trader, "50", key="w")
        stranger = get_user_model().objects.create_user("stranger", is_staff=True)

        assert logged_in(otto).get(QUEUE).status_code == 200
        assert logged_in(stranger).get(QUEUE).status_code == 403


class TestIndex:
    def test_an_auditor_sees_the_pending_count_at_the_top_of_the_index(self, trader, ann):
        apply(trader, "50", key="a")
        apply(trader, "150", key="b")

        response = logged_in(ann).get("/admin/")

        body = response.content.decode()
        assert re.search(r'id="review-queue-count">2<', body)
        assert body.index("review-queue-panel") < body.index("app-withdrawals")
        assert "Open the review queue" in body

    def test_a_member_of_no_role_sees_no_count(self, trader):
        apply(trader, "50", key="a")
        stranger = get_user_model().objects.create_user("stranger", is_staff=True)

        body = logged_in(stranger).get("/admin/").content.decode()

        assert "review-queue-count" not in body and "Review queue" not in body

    def test_says_what_the_site_is_and_names_the_tables_as_people_do(self, ann, otto):
        page_of = {who.username: text(logged_in(who).get("/admin/").content) for who in (ann, otto)}

        assert "Exchange wallet — back office" in page_of["ann"]
        assert "View site" not in page_of["ann"] and "API docs" in page_of["ann"]
        for name in ("Withdrawals", "Withdrawal audit log", "Deposits", "Balances", "Flows"):
            assert name in page_of["ann"]
        for name in ("Wallet addresses", "Alerts", "Coins", "Deposits"):
            assert name in page_of["otto"]
        assert "Wallet addresss" not in page_of["otto"] and "Withdraw records" not in page_of["ann"]


class TestWithdrawalPage:
    def test_shows_the_review_beside_the_applicants_balances_deposits_and_withdrawals(self, trader, ann):
        RechargeRecord.objects.create(
            recharge_no="R-seen", user=trader, coin_id="ETH", coin_name="ETH", tx_hash="0xabc", from_address="x",
            to_address="y", amount=Decimal("1000"), status=RechargeStatus.CONFIRMED,
        )  # fmt: skip
        earlier = apply(trader, "2", key="earlier")
        record = apply(trader, "150", key="large")

        response = logged_in(ann).get(page(record))

        body = response.content.decode()
        assert response.status_code == 200
        assert 'id="review-approvals">0 of 2' in body
        assert "Two auditors required" in body and "never: no withdrawal of any user" in body
        applicant = body[body.index('id="applicant-balances"') :]
        assert ">848<" in applicant and ">152<" in applicant  # available, frozen of ETH
        assert "R-seen" in applicant and ">1,000<" in applicant
        assert earlier.withdraw_no in applicant
        assert 'id="approve-button"' in body and 'id="reject-button"' in body

    def test_an_operator_sees_the_review_but_no_decision_button(self, trader, otto):
        record = apply(trader, "150", key="large")

        body = logged_in(otto).get(page(record)).content.decode()

        assert 'id="review-panel"' in body
        assert "approve-button" not in body and "reject-button" not in body and "/approve/" not in body

    def test_the_applicant_has_no_button_on_their_own_withdrawal(self, ann):
        fund(ann)
        record = apply(ann, "50", key="mine")

        body = logged_in(ann).get(page(record)).content.decode()

        assert "approve-button" not in body and "another auditor decides it" in body


class TestDecisionButtons:
    def test_the_first_of_two_approvals_says_a_second_auditor_is_awaited(self, trader, ann, bob):
        record = apply(trader, "150", key="large")

        first = logged_in(ann).post(decide_url(record, "approve"), {"approve-remark": "known customer"}, follow=True)
        second = logged_in(bob).post(decide_url(record, "approve"), {"approve-remark": ""}, follow=True)

        record.refresh_from_db()
        assert messages_of(first) == [f"{record.withdraw_no}: 1 of 2 approvals — waiting for a second auditor"]
        assert first.redirect_chain == [(page(record), 302)]
        assert messages_of(second) == [f"{record.withdraw_no}: approved"]
        assert record.status == WithdrawStatus.APPROVED
        assert list(record.audit_logs.filter(action="approve").values_list("auditor__username", "remark")) == [
            ("ann", "known customer"),
            ("bob", ""),
        ]

    def test_an_auditor_cannot_approve_twice_and_the_page_says_why(self, trader, ann):
        record = apply(trader, "150", key="large")
        client = logged_in(ann)
        client.post(decide_url(record, "approve"), {"approve-remark": ""}, follow=True)

        again = client.post(decide_url(record, "approve"), {"approve-remark": ""}, follow=True)

        record.refresh_from_db()
        assert messages_of(again) == [
            f"{record.withdraw_no}: You approved this withdrawal already: a second, different auditor must approve it."
        ]
        assert record.audit_logs.filter(action="approve").count() == 1
        assert record.status == WithdrawStatus.PENDING_REVIEW
        body = again.content.decode()
        assert "approve-button" not in body and "You approved it already" in body

    def test_a_rejection_needs_a_remark_and_unfreezes_the_amount(self, trader, ann):
        record = apply(trader, "50", key="w")
        client = logged_in(ann)

        refused = client.post(decide_url(record, "reject"), {"reject-remark": "  "}, follow=True)
        record.refresh_from_db()
        assert record.status == WithdrawStatus.PENDING_REVIEW
        rejected = client.post(decide_url(record, "reject"), {"reject-remark": "sanctioned address"}, follow=True)

        record.refresh_from_db()
        assert messages_of(refused) == [
            f"{record.withdraw_no}: not rejected: a remark is required (the user is told why)."
        ]
        assert messages_of(rejected) == [f"{record.withdraw_no}: rejected"]
        assert (record.status, record.audit_remark, record.audit_user) == (
            WithdrawStatus.REJECTED,
            "sanctioned address",
            "ann",
        )

    def test_without_the_audit_permission_a_post_is_refused_and_changes_nothing(self, trader, otto):
        record = apply(trader, "50", key="w")

        response = logged_in(otto).post(decide_url(record, "approve"), {"approve-remark": ""})

        record.refresh_from_db()
        assert response.status_code == 403
        assert record.status == WithdrawStatus.PENDING_REVIEW
        assert not record.audit_logs.filter(action="approve").exists()

    def test_a_get_or_a_post_without_the_csrf_token_changes_nothing(self, trader, ann):
        record = apply(trader, "50", key="w")
        guarded = Client(enforce_csrf_checks=True)
        guarded.force_login(ann)

        fetched = logged_in(ann).get(decide_url(record, "approve"))
        forged = guarded.post(decide_url(record, "approve"), {"approve-remark": ""})

        record.refresh_from_db()
        assert (fetched.status_code, forged.status_code) == (405, 403)
        assert record.status == WithdrawStatus.PENDING_REVIEW

    def test_the_list_action_reports_progress_the_same_way(self, trader, ann):
        record = apply(trader, "150", key="large")

        response = logged_in(ann).post(
            "/admin/withdrawals/withdrawrecord/",
            {"action": "approve", "_selected_action": [record.pk], "apply": "1", "remark": ""},
            follow=True,
        )

        assert messages_of(response) == [f"{record.withdraw_no}: 1 of 2 approvals — waiting for a second auditor"]


class TestPages:
    def test_every_script_and_stylesheet_comes_from_this_application(self, trader, ann):
        record = apply(trader, "150", key="large")
        client = logged_in(ann)
        pages = ["/admin/", QUEUE, page(record), "/admin/withdrawals/withdrawrecord/", "/admin/login/"]

        sources = set()
        for url in pages:
            collector = _Sources()
            collector.feed(client.get(url).content.decode())
            sources |= collector.found

        # Same origin, path only: no scheme, no host, no protocol-relative //host.
        assert sources and all(src.startswith("/") and not src.startswith("//") for src in sources), sorted(sources)
        assert "/static/wallet/backoffice.css" in sources

    def test_the_back_office_templates_live_in_the_top_level_templates_folder(self):
        app_folders = [
            str(Path(config.path, "templates").relative_to(ROOT))
            for config in apps.get_app_configs()
            if Path(config.path).parent == ROOT and Path(config.path, "templates").exists()
        ]

        assert app_folders == []
        assert (ROOT / "templates/admin/wallet/remark_action.html").exists()


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "script" and attr.get("src"):
            self.found.add(attr["src"])
        if tag == "link" and attr.get("rel") == "stylesheet":
            self.found.add(attr["href"] or "")
