"""A user cancels their own withdrawal while it waits for review: once, before any auditor or signer acted."""

# ruff: noqa: F811 - pytest fixtures imported from chains.testing are named as test parameters

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection
from eth_utils import to_checksum_address

from assets import selectors as assets_selectors
from assets.models import BusinessType, Flow, OutboxMessage
from chains.models import NonceCursor
from chains.testing import evm_adapter, evm_node  # noqa: F401
from coins.models import CoinConfig
from wallet_project.errors import Conflict, NotFound
from withdrawals import payout as withdrawals_payout
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus
from withdrawals.tests.test_onchain import _hot_address, nonce, signed_tx
from withdrawals.tests.test_withdrawals import apply, balance, fund, make_auditor

OUTSIDE = to_checksum_address("0x" + "5e" * 20)
URL = "/api/v1/wallet/withdrawals"


def cancel(record: WithdrawRecord, user=None) -> WithdrawRecord:
    return withdrawals_services.withdrawal_cancel(user_id=(user or record.user).id, withdraw_no=record.withdraw_no)


@pytest.mark.django_db
class TestCancel:
    def test_the_owner_cancels_a_withdrawal_waiting_for_review_and_gets_the_amount_back(self, user):
        fund(user)
        record = apply(user, "50")  # above the audit threshold: waits for an auditor
        assert record.status == WithdrawStatus.PENDING_REVIEW

        cancelled = cancel(record)

        assert cancelled.status == WithdrawStatus.CANCELLED
        assert balance(user) == (Decimal(500), Decimal(0))
        flow = Flow.objects.get(business_type=BusinessType.WITHDRAW_CANCEL)
        assert (flow.biz_ref, flow.amount, flow.frozen_amount) == (record.withdraw_no, Decimal(50), Decimal(-50))
        assert list(record.audit_logs.order_by("id").values_list("action", "from_status", "to_status")) == [
            ("apply", WithdrawStatus.PENDING_REVIEW, WithdrawStatus.PENDING_REVIEW),
            ("cancel", WithdrawStatus.PENDING_REVIEW, WithdrawStatus.CANCELLED),
        ]
        events = OutboxMessage.objects.filter(tags="WALLET_WITHDRAW").order_by("id")
        assert [e.payload["body"]["status"] for e in events] == [1, 7]
        assert assets_selectors.ledger_mismatches() == []

    def test_cancelling_twice_gives_the_same_answer_and_unfreezes_once(self, user):
        fund(user)
        record = apply(user, "50")

        first = cancel(record)
        second = cancel(record)

        assert (first.pk, first.status) == (second.pk, second.status) == (record.pk, WithdrawStatus.CANCELLED)
        assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_CANCEL).count() == 1
        assert record.audit_logs.filter(action="cancel").count() == 1
        assert balance(user) == (Decimal(500), Decimal(0))

    def test_an_approved_withdrawal_cannot_be_cancelled(self, user):
        fund(user)
        record = apply(user, "2")  # below the audit threshold: approved at once, on its way to be paid

        with pytest.raises(withdrawals_services.WithdrawalNotCancellable) as refused:
            cancel(record)

        assert refused.value.code == "withdrawal_not_cancellable" and refused.value.http_status == 409
        record.refresh_from_db()
        assert record.status == WithdrawStatus.APPROVED
        assert balance(user) == (Decimal(498), Decimal(2))

    def test_a_first_approval_of_two_blocks_the_cancel(self, user):
        fund(user)
        record = apply(user, "150")  # above the dual-audit threshold: two auditors
        withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=make_auditor("ops-kim").id)

        with pytest.raises(withdrawals_services.WithdrawalNotCancellable, match="auditor"):
            cancel(record)

        record.refresh_from_db()
        assert record.status == WithdrawStatus.PENDING_REVIEW
        assert balance(user) == (Decimal(350), Decimal(150))

    def test_a_rejected_withdrawal_stays_rejected(self, user):
        fund(user)
        record = apply(user, "50")
        withdrawals_services.withdrawal_reject(withdraw_id=record.id, auditor_id=make_auditor("ops-lu").id, remark="no")

        with pytest.raises(withdrawals_services.WithdrawalNotCancellable):
            cancel(record)

        record.refresh_from_db()
        assert record.status == WithdrawStatus.REJECTED
        assert not Flow.objects.filter(business_type=BusinessType.WITHDRAW_CANCEL).exists()

    def test_a_cancelled_withdrawal_cannot_be_approved_or_rejected(self, user):
        fund(user)
        record = apply(user, "50")
        cancel(record)
        auditor = make_auditor("ops-mo")

        with pytest.raises(Conflict):
            withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id)
        with pytest.raises(Conflict):
            withdrawals_services.withdrawal_reject(withdraw_id=record.id, auditor_id=auditor.id, remark="late")

        assert balance(user) == (Decimal(500), Decimal(0))
        assert assets_selectors.ledger_mismatches() == []

    def test_nobody_cancels_another_users_withdrawal(self, user, other_user):
        fund(user)
        record = apply(user, "50")

        with pytest.raises(NotFound):
            cancel(record, user=other_user)

        record.refresh_from_db()
        assert record.status == WithdrawStatus.PENDING_REVIEW

    def test_cancelled_withdrawals_do_not_count_against_the_daily_limit(self, user):
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_daily_limit=Decimal(60))
        fund(user)
        cancel(apply(user, "50", key="a"))

        again = apply(user, "55", key="b")

        assert again.status == WithdrawStatus.PENDING_REVIEW
        assert balance(user) == (Decimal(445), Decimal(55))


@pytest.mark.django_db
class TestCancelApi:
    def test_cancels_and_answers_the_same_when_asked_again(self, user, auth_client):
        fund(user)
        record = apply(user, "50")

        first = auth_client.post(f"{URL}/{record.withdraw_no}/cancel")
        second = auth_client.post(f"{URL}/{record.withdraw_no}/cancel")

        assert first.status_code == second.status_code == 200
        assert first.json() == second.json()
        assert (first.json()["status"], first.json()["status_name"]) == (7, "CANCELLED")
        assert balance(user) == (Decimal(500), Decimal(0))

    def test_an_approved_withdrawal_is_a_409_in_the_error_shape(self, user, auth_client):
        fund(user)
        record = apply(user, "2")

        response = auth_client.post(f"{URL}/{record.withdraw_no}/cancel")

        assert response.status_code == 409
        assert response.json()["code"] == "withdrawal_not_cancellable"
        assert response.json()["fields"] == {}

    def test_another_users_withdrawal_is_not_found(self, user, other_user, auth_client):
        fund(other_user)
        theirs = apply(other_user, "50")

        response = auth_client.post(f"{URL}/{theirs.withdraw_no}/cancel")

        assert response.status_code == 404 and response.json()["code"] == "not_found"
        theirs.refresh_from_db()
        assert theirs.status == WithdrawStatus.PENDING_REVIEW

    def test_is_in_the_openapi_schema(self, client):
        schema = client.get("/api/schema", HTTP_ACCEPT="application/json").json()

        operation = schema["paths"]["/api/v1/wallet/withdrawals/{withdraw_no}/cancel"]["post"]
        assert "200" in operation["responses"]
        assert "requestBody" not in operation


def race(calls) -> list[object]:
    """Run the calls at once in threads (each on its own connection); return each result or exception."""
    start = threading.Barrier(len(calls))
    outcomes: list[object] = [None] * len(calls)

    def run(i, call) -> None:
        start.wait(timeout=10)
        try:
            outcomes[i] = call()
        except Exception as error:
            outcomes[i] = error
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
class TestCancelRaces:
    def test_a_cancel_racing_an_approval_ends_in_exactly_one_of_the_two(self, user):
        fund(user, "1000")
        auditor = make_auditor("ops-ned")
        winners = set()

        for n in range(6):
            record = apply(user, "50", key=f"race-{n}")
            # Every other round the auditor is a few milliseconds late, so that both orders are seen.
            delay = 0.01 * (n % 2)

            def approve(r=record, delay=delay) -> WithdrawRecord:
                time.sleep(delay)
                return withdrawals_services.withdrawal_approve(withdraw_id=r.id, auditor_id=auditor.id)

            cancelled, approved = race([lambda r=record: cancel(r), approve])

            record.refresh_from_db()
            if record.status == WithdrawStatus.CANCELLED:
                assert isinstance(approved, Conflict), approved
                assert isinstance(cancelled, WithdrawRecord)
                winners.add("cancel")
            else:
                assert record.status == WithdrawStatus.APPROVED
                assert isinstance(cancelled, withdrawals_services.WithdrawalNotCancellable), cancelled
                assert isinstance(approved, WithdrawRecord)
                winners.add("approve")
            assert Flow.objects.filter(
                biz_ref=record.withdraw_no, business_type=BusinessType.WITHDRAW_CANCEL
            ).count() == (1 if record.status == WithdrawStatus.CANCELLED else 0)

        approved_total = sum(r.amount for r in WithdrawRecord.objects.filter(user=user, status=WithdrawStatus.APPROVED))
        assert balance(user) == (Decimal(1000) - approved_total, approved_total)
        assert assets_selectors.ledger_mismatches() == []
        assert winners  # at least one decided race; which one wins is up to the scheduler

    def test_a_cancel_racing_the_payout_leaves_a_cancelled_unsigned_or_a_signed_uncancellable_withdrawal(
        self, user, monkeypatch, settings, tmp_path, evm_node, evm_adapter
    ):
        hot = _hot_address(monkeypatch, settings, tmp_path, evm_node)
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_audit_threshold=Decimal("0.5"))
        fund(user, "10")
        auditor = make_auditor("ops-oz")
        outcomes = set()

        for n in range(3):
            record = apply(user, "1", key=f"pay-race-{n}")
            assert record.status == WithdrawStatus.PENDING_REVIEW

            race(
                [
                    lambda r=record: withdrawals_services.withdrawal_approve(withdraw_id=r.id, auditor_id=auditor.id),
                    lambda r=record: cancel(r),
                    lambda: withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter),
                ]
            )
            withdrawals_payout.withdrawals_pay(chain_id="ETH", adapter=evm_adapter)  # whatever is approved now

            record.refresh_from_db()
            unfrozen = Flow.objects.filter(biz_ref=record.withdraw_no, business_type=BusinessType.WITHDRAW_CANCEL)
            if record.status == WithdrawStatus.CANCELLED:
                assert (record.tx_hash, signed_tx(record), nonce(record)) == (None, None, None)
                assert unfrozen.count() == 1
                outcomes.add("cancelled")
            else:
                assert record.status == WithdrawStatus.PROCESSING and record.tx_hash and signed_tx(record)
                assert not unfrozen.exists()
                with pytest.raises(withdrawals_services.WithdrawalNotCancellable):
                    cancel(record)
                outcomes.add("signed")

        signed = WithdrawRecord.objects.filter(user=user, status=WithdrawStatus.PROCESSING).count()
        next_nonce = NonceCursor.objects.filter(address=hot.address).values_list("next_nonce", flat=True).first()
        assert (next_nonce or 0) == signed  # no nonce taken for a cancelled withdrawal
        assert balance(user) == (Decimal(10) - signed, Decimal(signed))
        assert assets_selectors.ledger_mismatches() == []
        assert outcomes
