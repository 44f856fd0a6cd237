"""The auditors' list actions (several withdrawals at once) in the real back-office, driven in headless Chromium."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from eth_utils import to_checksum_address

from assets import services as assets_services
from assets.models import Balance, BusinessType
from coins.models import CoinConfig
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def auditor(name: str):
    person = get_user_model().objects.create_user(name, password=f"pw-{name}-1", is_staff=True)
    person.user_permissions.add(
        Permission.objects.get(codename="view_withdrawrecord"), Permission.objects.get(codename="audit_withdrawrecord")
    )
    return person


def log_in(driver, live_server, name: str) -> None:
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{live_server.url}/admin/login/")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(f"pw-{name}-1")
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    assert driver.find_elements(By.ID, "logout-form"), driver.find_element(By.TAG_NAME, "body").text[:500]


def decide(driver, live_server, record: WithdrawRecord, action: str, remark: str) -> str:
    """Tick the withdrawal in the list, run the action, give the remark, confirm; return the message shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver.get(f"{live_server.url}/admin/withdrawals/withdrawrecord/")
    driver.find_element(By.CSS_SELECTOR, f"input.action-select[value='{record.pk}']").click()
    Select(driver.find_element(By.NAME, "action")).select_by_value(action)
    driver.find_element(By.CSS_SELECTOR, "button[name=index]").click()
    assert record.withdraw_no in driver.page_source  # the review page lists what is decided
    driver.find_element(By.NAME, "remark").send_keys(remark)
    driver.find_element(By.CSS_SELECTOR, "input[name=apply]").click()
    return driver.find_element(By.CSS_SELECTOR, "ul.messagelist").text


def test_two_auditors_approve_a_large_withdrawal_and_one_rejects_another(browser, live_server):
    applicant = get_user_model().objects.create_user("trader")
    eth = CoinConfig.objects.get(coin_id="ETH")
    assets_services.balance_credit(
        user_id=applicant.id, coin=eth, amount=Decimal(500), business_type=BusinessType.RECHARGE, biz_ref="fund"
    )
    outside = to_checksum_address("0x" + "5e" * 20)
    large = withdrawals_services.withdrawal_apply(
        user_id=applicant.id, coin_id="ETH", to_address=outside, amount="150", idempotency_key="large"
    )
    other = withdrawals_services.withdrawal_apply(
        user_id=applicant.id, coin_id="ETH", to_address=outside, amount="20", idempotency_key="other"
    )
    auditor("ops-ann")
    auditor("ops-bob")

    log_in(browser, live_server, "ops-ann")
    first = decide(browser, live_server, large, "approve", "first look: fine")
    again = decide(browser, live_server, large, "approve", "me again")
    rejected = decide(browser, live_server, other, "reject", "address on a sanctions list")
    large.refresh_from_db()
    assert large.status == WithdrawStatus.PENDING_REVIEW  # above 100 ETH: one approval is not enough
    log_in(browser, live_server, "ops-bob")
    second = decide(browser, live_server, large, "approve", "second look: fine")

    large.refresh_from_db()
    other.refresh_from_db()
    assert f"{large.withdraw_no}: 1 of 2 approvals — waiting for a second auditor" in first
    assert "a second, different auditor must approve" in again
    assert f"{other.withdraw_no}: rejected" in rejected
    assert f"{large.withdraw_no}: approved" in second
    assert (large.status, other.status) == (WithdrawStatus.APPROVED, WithdrawStatus.REJECTED)
    assert list(large.audit_logs.filter(action="approve").values_list("auditor__username", "remark")) == [
        ("ops-ann", "first look: fine"),
        ("ops-bob", "second look: fine"),
    ]
    balance = Balance.objects.get(user=applicant, coin=eth)
    assert (balance.available, balance.frozen) == (Decimal(350), Decimal(150))
