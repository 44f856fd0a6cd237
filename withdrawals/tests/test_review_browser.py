"""
The auditor's path through the back office in headless Chromium (Debian's chromium + chromedriver):
accounts made by create_staff_user, the pending count on the index, the review queue, one
withdrawal that needs two auditors, the progress message, the second approval; an auditor cannot
approve twice and an operator gets no button. Screenshots of each step are kept as test artifacts
in $TEST_ARTIFACTS_DIR (default var/test-artifacts/).
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from eth_utils import to_checksum_address

from assets import services as assets_services
from assets.models import BusinessType
from coins.models import CoinConfig
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / "var" / "test-artifacts") / "review-queue"
PNG = b"\x89PNG\r\n\x1a\n"
WAITING = "1 of 2 approvals — waiting for a second auditor"


def staff_user(username: str, role: str, tmp_path: Path) -> str:
    """Create the account as an administrator would, with the command; return its password."""
    password = f"{username} reviews withdrawals 42"
    secret = tmp_path / f"{username}.pw"
    secret.write_text(password + "\n")
    call_command("create_staff_user", "--username", username, "--role", role, "--password-file", str(secret))
    return password


def fund(user, coin_id: str, amount: str) -> None:
    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id=coin_id),
        amount=Decimal(amount),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{coin_id}",
    )


def apply(user, coin_id: str, amount: str, to: str, key: str) -> WithdrawRecord:
    return withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id=coin_id, to_address=to, amount=amount, idempotency_key=key
    )


class Session:
    """One person at the browser."""

    def __init__(self, driver, live_server) -> None:
        self.driver = driver
        self.base = live_server.url
        self.shots: list[Path] = []

    def log_in(self, username: str, password: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.delete_all_cookies()
        self.driver.get(f"{self.base}/admin/login/")
        self.driver.find_element(By.NAME, "username").send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        assert self.driver.find_elements(By.ID, "logout-form"), self.body()[:500]

    def body(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.TAG_NAME, "body").text

    def messages(self) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, "ul.messagelist").text

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{len(self.shots) + 1:02d}-{name}.png"
        path.unlink(missing_ok=True)  # a file left by an earlier run proves nothing
        self.driver.save_screenshot(str(path))
        self.shots.append(path)

    def overflow(self, selector: str) -> dict[str, int]:
        """Widths of an element and of the page: scrollWidth above clientWidth means a sideways scrollbar."""
        return self.driver.execute_script(
            "const el = document.querySelector(arguments[0]);"
            "return {scroll: el.scrollWidth, client: el.clientWidth,"
            " pageScroll: document.documentElement.scrollWidth, pageClient: document.documentElement.clientWidth,"
            " viewport: window.innerWidth};",
            selector,
        )

    def approve(self, remark: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.NAME, "approve-remark").send_keys(remark)
        self.driver.find_element(By.ID, "approve-button").click()


def test_two_auditors_approve_from_the_review_queue_and_an_operator_only_looks(
    browser, live_server, staff_roles, tmp_path
):
    from selenium.webdriver.common.by import By

    audrey = staff_user("audrey", "auditor", tmp_path)
    bruno = staff_user("bruno", "auditor", tmp_path)
    olga = staff_user("olga", "operator", tmp_path)
    trader = get_user_model().objects.create_user("trader-tom")
    fund(trader, "ETH", "1000")
    fund(trader, "USDT-ERC20", "900000")
    outside = to_checksum_address("0x" + "5e" * 20)
    # The small one first, before the large ones count against the trader's velocity (RISK_VELOCITY_*).
    apply(trader, "ETH", "2", outside, "small")  # below the threshold: approved at once
    large = apply(trader, "ETH", "150.123456789012345678", outside, "large")  # above 100 ETH: two auditors
    apply(trader, "USDT-ERC20", "250000.123456", to_checksum_address("0x" + "6f" * 20), "usdt")  # two auditors
    apply(trader, "ETH", "50.5", to_checksum_address("0x" + "7a" * 20), "medium")  # one auditor
    session = Session(browser, live_server)

    # The auditor's home: the count, then the queue.
    session.log_in("audrey", audrey)
    count = browser.find_element(By.ID, "review-queue-count").text
    session.shot("auditor-index")
    browser.find_element(By.LINK_TEXT, "Open the review queue").click()
    queue_rows = [
        row.get_attribute("data-withdraw-no")
        for row in browser.find_elements(By.CSS_SELECTOR, "#review-queue tbody tr")
    ]
    queue_text = session.body()
    queue_widths = session.overflow("#review-queue-scroll")
    session.shot("review-queue")

    # One withdrawal that needs two auditors: the first approval.
    browser.find_element(By.LINK_TEXT, large.withdraw_no).click()
    page_text = session.body()
    session.shot("withdrawal-page")
    session.approve("known customer, address checked")
    after_first = session.messages()
    first_state = browser.find_element(By.ID, "review-approvals").text
    session.shot("first-approval")

    # No second approval from the same auditor: no button, and a forged POST is refused.
    buttons_after_first = browser.find_elements(By.ID, "approve-button")
    browser.execute_script(
        "const form = document.createElement('form');"
        "form.method = 'post'; form.action = arguments[0];"
        "form.innerHTML = '<input name=csrfmiddlewaretoken value=' + arguments[1] + '>';"
        "document.body.appendChild(form); form.submit();",
        f"/admin/withdrawals/withdrawrecord/{large.pk}/approve/",
        browser.find_element(By.NAME, "csrfmiddlewaretoken").get_attribute("value"),
    )
    browser.find_element(By.ID, "review-panel")  # waits for the page after the POST
    twice = session.messages()
    session.shot("second-approval-by-the-same-auditor-refused")

    # An operator sees the review, not the buttons.
    session.log_in("olga", olga)
    browser.get(f"{live_server.url}/admin/withdrawals/withdrawrecord/{large.pk}/change/")
    operator_panel = browser.find_elements(By.ID, "review-panel")
    operator_buttons = browser.find_elements(By.ID, "approve-button") + browser.find_elements(By.ID, "reject-button")
    session.shot("operator-view")

    # The second auditor completes the approval.
    session.log_in("bruno", bruno)
    browser.get(f"{live_server.url}/admin/withdrawals/withdrawrecord/review/")
    browser.find_element(By.LINK_TEXT, large.withdraw_no).click()
    session.approve("second look: fine")
    after_second = session.messages()
    session.shot("approved")
    browser.get(f"{live_server.url}/admin/withdrawals/withdrawrecord/")
    list_widths = session.overflow("#changelist .results")
    session.shot("withdrawals-list")
    browser.get(f"{live_server.url}/admin/assets/flow/")  # four amount columns per row
    flow_widths = session.overflow("#changelist .results")
    flow_text = session.body()
    session.shot("flows-list")

    large.refresh_from_db()
    assert count == "3"
    assert queue_rows[0] == large.withdraw_no and len(queue_rows) == 3
    assert "trader-tom" in queue_text and "150.123456789012345678 ETH" in queue_text
    assert "250,000.123456 USDT-ERC20" in queue_text and "0 of 2" in queue_text
    assert "First withdrawal of this user to this address" in queue_text
    assert queue_widths["viewport"] >= 1380  # the 1400 px window the table must fit
    assert queue_widths["scroll"] <= queue_widths["client"], queue_widths
    assert queue_widths["pageScroll"] <= queue_widths["pageClient"], queue_widths
    assert "Two auditors required" in page_text and "Balances" in page_text and "Recent deposits" in page_text
    assert f"{large.withdraw_no}: {WAITING}" in after_first
    assert first_state.startswith("1 of 2")
    assert buttons_after_first == []
    assert "You approved this withdrawal already" in twice
    assert operator_panel and operator_buttons == []
    assert f"{large.withdraw_no}: approved" in after_second
    assert list_widths["scroll"] <= list_widths["client"], list_widths
    assert flow_widths["scroll"] <= flow_widths["client"], flow_widths
    assert "797.376543210987654322" in flow_text  # the ETH balance after the last freeze, unpadded
    assert large.status == WithdrawStatus.APPROVED
    assert list(large.audit_logs.filter(action="approve").values_list("auditor__username", flat=True)) == [
        "audrey",
        "bruno",
    ]
    assert len(session.shots) == 9
    for shot in session.shots:
        data = shot.read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, shot
