"""Withdrawals: apply with its checks and freeze, audit by one or two auditors, internal transfers."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from eth_utils import to_checksum_address

from addresses.models import AddressType, WalletAddress
from assets import selectors as assets_selectors
from assets import services as assets_services
from assets.models import Balance, BusinessType, Flow, OutboxMessage
from assets.services import InsufficientFunds
from coins.models import CoinConfig, FeeType, Switch
from recharges.models import AccountHold, RechargeRecord, RechargeStatus
from wallet_project.errors import Conflict, WalletError
from withdrawals import services as withdrawals_services
from withdrawals.models import WithdrawRecord, WithdrawStatus

OUTSIDE = to_checksum_address("0x" + "5e" * 20)
URL = "/api/v1/wallet/withdrawals"


def fund(user, amount: str = "500", coin_id: str = "ETH") -> None:
    assets_services.balance_credit(
        user_id=user.id,
        coin=CoinConfig.objects.get(coin_id=coin_id),
        amount=Decimal(amount),
        business_type=BusinessType.RECHARGE,
        biz_ref=f"fund-{user.id}-{coin_id}-{amount}",
    )


def balance(user, coin_id: str = "ETH") -> tuple[Decimal, Decimal]:
    row = Balance.objects.filter(user=user, coin_id=coin_id).first()
    return (row.available, row.frozen) if row else (Decimal(0), Decimal(0))


def apply(user, amount: str, *, key: str = "k1", to: str = OUTSIDE, coin_id: str = "ETH") -> WithdrawRecord:
    return withdrawals_services.withdrawal_apply(
        user_id=user.id, coin_id=coin_id, to_address=to, amount=amount, idempotency_key=key
    )


def hold_withdrawals(user) -> None:
    """A reorg hold on the user whose 1 ETH shortfall the ledger never saw (as holds made before debts were booked)."""
    deposit = RechargeRecord.objects.create(
        recharge_no="R1", user=user, coin_id="ETH", coin_name="ETH", tx_hash="0x1", from_address="a",
        to_address="b", amount=1, status=RechargeStatus.REORGED,
    )  # fmt: skip
    AccountHold.objects.create(
        user=user, coin_id="ETH", recharge=deposit, amount=1, frozen_amount=0, shortfall=1, biz_ref="r-1",
        reason="reorg",
    )  # fmt: skip


def make_auditor(name: str):
    return get_user_model().objects.create_user(name, password=f"pw-{name}-1", is_staff=True)


@pytest.mark.django_db
class TestApply:
    def test_below_the_audit_threshold_is_approved_at_once_with_the_amount_frozen(self, user):
        fund(user)

        record = apply(user, "2.5")

        assert (record.status, record.fee, record.actual_amount) == (
            WithdrawStatus.APPROVED,
            Decimal("0.003"),
            Decimal("2.497"),
        )
        assert balance(user) == (Decimal("497.5"), Decimal("2.5"))
        assert list(record.audit_logs.order_by("id").values_list("action", "to_status")) == [
            ("apply", WithdrawStatus.PENDING_REVIEW),
            ("auto_approve", WithdrawStatus.APPROVED),
        ]
        event = OutboxMessage.objects.get(tags="WALLET_WITHDRAW").payload["body"]
        assert (event["withdraw_no"], event["amount"], event["fee"], event["actual_amount"], event["status"]) == (
            record.withdraw_no,
            "2.5",
            "0.003",
            "2.497",
            int(WithdrawStatus.APPROVED),
        )
        assert event["internal"] is False
        assert assets_selectors.ledger_mismatches() == []

    def test_the_same_request_again_is_the_same_withdrawal_and_another_under_its_key_is_refused(self, user):
        fund(user)

        first = apply(user, "2.5")
        again = apply(user, "2.5")
        with pytest.raises(Conflict) as other:
            apply(user, "3")

        assert again.pk == first.pk
        assert other.value.field == "idempotency_key"
        assert balance(user) == (Decimal("497.5"), Decimal("2.5"))
        assert Flow.objects.filter(business_type=BusinessType.WITHDRAW_FREEZE).count() == 1

    def test_a_key_differing_only_in_case_is_another_withdrawal(self, user):
        fund(user)
        first = apply(user, "2.5", key="k1")

        other_case = apply(user, "2.5", key="K1")

        assert other_case.pk != first.pk
        assert balance(user) == (Decimal(495), Decimal(5))

    def test_a_fixed_fee_finer_than_the_coin_is_refused_as_a_misconfiguration(self, user):
        CoinConfig.objects.filter(coin_id="BTC").update(withdraw_fee=Decimal("0.000000001"))
        fund(user, "1", coin_id="BTC")

        with pytest.raises(WalletError, match="finer than its precision"):
            apply(user, "0.01", coin_id="BTC", to="bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")

        assert WithdrawRecord.objects.count() == 0

    def test_a_rate_fee_is_rounded_up_to_the_coins_precision(self, user):
        CoinConfig.objects.filter(coin_id="BTC").update(
            withdraw_fee_type=FeeType.RATE, withdraw_fee_rate=Decimal("0.001"), min_withdraw_amount=Decimal("0.0001")
        )
        fund(user, "1", coin_id="BTC")

        record = apply(user, "0.00123457", coin_id="BTC", to="bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080")

        assert (record.fee, record.actual_amount) == (Decimal("0.00000124"), Decimal("0.00123333"))

    @pytest.mark.parametrize(
        ("change", "amount", "field"),
        [
            ({}, "0.001", "amount"),  # below the minimum of 0.01
            ({}, "1001", "amount"),  # above the maximum of 1000
            ({"withdraw_fee": Decimal("0.02")}, "0.02", "amount"),  # does not cover the fee
            ({"withdraw_enabled": Switch.DISABLED}, "1", "coin"),
        ],
    )
    def test_refuses_what_the_coin_rules_forbid_and_writes_nothing(self, user, change, amount, field):
        fund(user)
        CoinConfig.objects.filter(coin_id="ETH").update(**change)

        with pytest.raises(WalletError) as refused:
            apply(user, amount)

        assert refused.value.field == field
        assert WithdrawRecord.objects.count() == 0
        assert balance(user) == (Decimal(500), Decimal(0))

    def test_refuses_more_than_the_available_balance_and_writes_nothing(self, user):
        fund(user, "1")

        with pytest.raises(InsufficientFunds):
            apply(user, "1.5")

        assert WithdrawRecord.objects.count() == 0
        assert balance(user) == (Decimal(1), Decimal(0))

    def test_the_daily_limit_counts_todays_withdrawals_except_released_ones(self, user):
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_daily_limit=Decimal(5), withdraw_audit_threshold=1)
        fund(user)
        auditor = make_auditor("ops-dora")
        first = apply(user, "3", key="a")

        with pytest.raises(WalletError, match="daily withdrawal limit of 5"):
            apply(user, "2.5", key="b")
        withdrawals_services.withdrawal_reject(withdraw_id=first.id, auditor_id=auditor.id, remark="wrong address")
        apply(user, "5", key="c")

        assert balance(user) == (Decimal(495), Decimal(5))

    def test_a_reorg_hold_stops_withdrawals(self, user):
        fund(user)
        hold_withdrawals(user)

        with pytest.raises(withdrawals_services.WithdrawalsHeld):
            apply(user, "1")

        assert WithdrawRecord.objects.count() == 0


@pytest.mark.django_db
class TestAudit:
    def test_one_auditor_approves_or_rejects_above_the_threshold_never_their_own(self, user):
        fund(user)
        auditor = make_auditor("ops-eve")
        approved_one = apply(user, "50", key="a")
        rejected_one = apply(user, "60", key="b")
        assert (approved_one.status, rejected_one.status) == (WithdrawStatus.PENDING_REVIEW,) * 2

        with pytest.raises(Conflict, match="theirs"):
            withdrawals_services.withdrawal_approve(withdraw_id=approved_one.id, auditor_id=user.id)
        withdrawals_services.withdrawal_approve(withdraw_id=approved_one.id, auditor_id=auditor.id, remark="ok")
        with pytest.raises(WalletError) as no_remark:
            withdrawals_services.withdrawal_reject(withdraw_id=rejected_one.id, auditor_id=auditor.id, remark=" ")
        withdrawals_services.withdrawal_reject(withdraw_id=rejected_one.id, auditor_id=auditor.id, remark="sanctioned")
        with pytest.raises(Conflict):
            withdrawals_services.withdrawal_approve(withdraw_id=rejected_one.id, auditor_id=auditor.id)

        approved_one.refresh_from_db()
        rejected_one.refresh_from_db()
        assert no_remark.value.field == "remark"
        assert (approved_one.status, approved_one.audit_user) == (WithdrawStatus.APPROVED, "ops-eve")
        assert (rejected_one.status, rejected_one.audit_remark) == (WithdrawStatus.REJECTED, "sanctioned")
        assert balance(user) == (Decimal(450), Decimal(50))
        assert assets_selectors.ledger_mismatches() == []

    def test_above_the_dual_threshold_two_different_auditors_must_approve(self, user):
        fund(user)
        first, second = make_auditor("ops-fay"), make_auditor("ops-gus")
        record = apply(user, "150")

        withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=first.id)
        record.refresh_from_db()
        assert record.status == WithdrawStatus.PENDING_REVIEW
        with pytest.raises(Conflict, match="different auditor"):
            withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=first.id)
        withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=second.id)

        record.refresh_from_db()
        assert record.status == WithdrawStatus.APPROVED
        assert list(record.audit_logs.filter(action="approve").values_list("auditor__username", flat=True)) == [
            "ops-fay",
            "ops-gus",
        ]

    def test_the_recipient_of_an_internal_transfer_cannot_approve_it(self, user, other_user):
        fund(user)
        address = to_checksum_address("0x" + "7c" * 20)
        WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT,
            address=address, user=other_user,
        )  # fmt: skip
        record = apply(user, "50", to=address)
        other_user.is_staff = True
        other_user.save()

        with pytest.raises(Conflict, match="pays them"):
            withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=other_user.id)

        assert balance(other_user) == (Decimal(0), Decimal(0))

    def test_the_approvals_needed_are_fixed_when_applying(self, user):
        fund(user)
        first = make_auditor("ops-ida")
        record = apply(user, "150")  # above the dual-audit threshold of 100 when applied for
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_dual_audit_threshold=Decimal(1000))

        withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=first.id)

        record.refresh_from_db()
        assert (record.approvals_required, record.status) == (2, WithdrawStatus.PENDING_REVIEW)

    def test_a_dual_audit_threshold_below_the_single_one_is_refused(self, db):
        from django.db import IntegrityError, transaction

        with pytest.raises(IntegrityError), transaction.atomic():
            CoinConfig.objects.filter(coin_id="ETH").update(
                withdraw_audit_threshold=Decimal(500), withdraw_dual_audit_threshold=Decimal(10)
            )

    def test_a_hold_or_a_switched_off_coin_after_applying_stops_approval(self, user):
        fund(user)
        auditor = make_auditor("ops-jo")
        record = apply(user, "50")
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_enabled=Switch.DISABLED)
        with pytest.raises(Conflict, match="switched off"):
            withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id)
        CoinConfig.objects.filter(coin_id="ETH").update(withdraw_enabled=Switch.ENABLED)
        hold_withdrawals(user)

        with pytest.raises(withdrawals_services.WithdrawalsHeld):
            withdrawals_services.withdrawal_approve(withdraw_id=record.id, auditor_id=auditor.id)

        record.refresh_from_db()
        assert record.status == WithdrawStatus.PENDING_REVIEW


@pytest.mark.django_db
class TestInternalTransfer:
    def test_to_another_users_deposit_address_settles_in_the_ledger_without_a_fee(self, user, other_user):
        fund(user)
        address = to_checksum_address("0x" + "7a" * 20)
        WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT,
            address=address, user=other_user,
        )  # fmt: skip

        record = apply(user, "4", to=address.lower())  # any spelling of the address

        assert (record.status, record.fee, record.to_user_id) == (WithdrawStatus.COMPLETED, 0, other_user.id)
        assert balance(user) == (Decimal(496), Decimal(0))
        assert balance(other_user) == (Decimal(4), Decimal(0))
        assert Flow.objects.get(user=other_user).business_type == BusinessType.INTERNAL_TRANSFER_IN
        assert assets_selectors.ledger_mismatches() == []

    def test_refuses_the_users_own_deposit_address(self, user):
        fund(user)
        address = to_checksum_address("0x" + "7b" * 20)
        WalletAddress.objects.create(
            coin_id="ETH", coin_name="ETH", chain_id="ETH", address_type=AddressType.USER_DEPOSIT,
            address=address, user=user,
        )  # fmt: skip

        with pytest.raises(WalletError, match="your own deposit address"):
            apply(user, "1", to=address)


@pytest.mark.django_db
class TestApi:
    def test_applies_lists_and_shows_the_callers_withdrawals_only(self, user, other_user, auth_client):
        fund(user)
        body = {"coin": "ETH", "to_address": OUTSIDE, "amount": "1.25", "idempotency_key": "api-1"}

        created = auth_client.post(URL, body, format="json")
        replayed = auth_client.post(URL, body, format="json")
        listed = auth_client.get(URL)
        shown = auth_client.get(f"{URL}/{created.json()['withdraw_no']}")
        other = WithdrawRecord.objects.create(
            withdraw_no="W1", user=other_user, coin_id="ETH", coin_name="ETH", to_address=OUTSIDE,
            amount=1, fee=0, actual_amount=1, idempotency_key="x",
        )  # fmt: skip

        assert created.status_code == 201 and replayed.status_code == 201
        assert created.json()["withdraw_no"] == replayed.json()["withdraw_no"]
        assert (created.json()["amount"], created.json()["status_name"]) == ("1.25", "APPROVED")
        assert [r["withdraw_no"] for r in listed.json()["results"]] == [created.json()["withdraw_no"]]
        assert shown.status_code == 200
        assert auth_client.get(f"{URL}/{other.withdraw_no}").status_code == 404

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"amount": "abc"}, "amount"),
            ({"amount": "-1"}, "amount"),
            ({"amount": "0"}, "amount"),
            ({"amount": "1.0000000000000000001"}, "amount"),
            ({"amount": 1.5}, "amount"),  # a JSON number: read as a float, so refused
            ({"amount": 100}, "amount"),  # an integer JSON number too: amounts are strings
            ({"amount": "1e2"}, "amount"),  # an exponent: not what the user typed
            ({"amount": " 1"}, "amount"),
            ({"amount": "+1"}, "amount"),
            ({"amount": "-0"}, "amount"),
            ({"amount": ".5"}, "amount"),
            ({"to_address": OUTSIDE.lower().replace("5e", "5f", 1)[:-1] + "Z"}, "to_address"),
            ({"to_address": "TJRabPrwbZy45sbavfcjinPJC18kjpRTv8"}, "to_address"),  # a TRON address for ETH
            ({"coin": "DOGE"}, "coin"),
            ({"idempotency_key": ""}, "idempotency_key"),
        ],
    )
    def test_bad_input_is_a_400_with_the_field_and_writes_nothing(self, user, auth_client, change, field):
        fund(user)
        body = {"coin": "ETH", "to_address": OUTSIDE, "amount": "1", "idempotency_key": "api-2", **change}

        response = auth_client.post(URL, body, format="json")

        assert response.status_code == 400, response.json()
        assert field in response.json()["fields"], response.json()
        assert WithdrawRecord.objects.count() == 0
        assert balance(user) == (Decimal(500), Decimal(0))

    def test_anonymous_callers_are_refused(self, api_client):
        assert api_client.post(URL, {}, format="json").status_code == 401


@pytest.mark.django_db
class TestAdmin:
    def test_an_auditor_with_the_permission_approves_in_the_admin(self, user, client):
        fund(user)
        record = apply(user, "50")
        auditor = make_auditor("ops-hal")
        auditor.user_permissions.add(Permission.objects.get(codename="view_withdrawrecord"))
        client.force_login(auditor)
        changelist = "/admin/withdrawals/withdrawrecord/"
        form = {"action": "approve", "_selected_action": [record.pk], "apply": "1", "remark": "checked"}

        assert 'value="approve"' not in client.get(changelist).content.decode()
        client.post(changelist, form)
        record.refresh_from_db()
        assert record.status == WithdrawStatus.PENDING_REVIEW

        auditor.user_permissions.add(Permission.objects.get(codename="audit_withdrawrecord"))
        client.force_login(get_user_model().objects.get(pk=auditor.pk))
        review = client.post(changelist, {"action": "approve", "_selected_action": [record.pk]})
        assert review.status_code == 200 and record.withdraw_no in review.content.decode()
        assert client.post(changelist, form).status_code == 302

        record.refresh_from_db()
        assert (record.status, record.audit_user, record.audit_remark) == (
            WithdrawStatus.APPROVED,
            "ops-hal",
            "checked",
        )


@pytest.mark.mysql
@pytest.mark.django_db(transaction=True)
class TestRaces:
    def _race(self, calls) -> list[object]:
        start = threading.Barrier(len(calls))
        outcomes: list[object] = []

        def run(call) -> None:
            start.wait(timeout=10)
            try:
                outcomes.append(call())
            except Exception as error:
                outcomes.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=run, args=(call,)) for call in calls]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        return outcomes

    def test_the_same_request_raced_freezes_once(self, user):
        fund(user)

        outcomes = self._race([lambda: apply(user, "2", key="same")] * 4)

        assert [type(o) for o in outcomes] == [WithdrawRecord] * 4  # every racer got the withdrawal
        assert {o.pk for o in outcomes} == {WithdrawRecord.objects.get().pk}
        assert balance(user) == (Decimal(498), Decimal(2))

    def test_racing_applications_never_overdraw(self, user):
        fund(user, "5")

        outcomes = self._race([lambda n=n: apply(user, "2", key=f"k{n}") for n in range(4)])

        assert sum(isinstance(o, WithdrawRecord) for o in outcomes) == 2
        assert sum(isinstance(o, InsufficientFunds) for o in outcomes) == 2
        assert balance(user) == (Decimal(1), Decimal(4))
        assert assets_selectors.ledger_mismatches() == []
