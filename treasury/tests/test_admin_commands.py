"""
The back office of the hot/cold treasury: cold addresses registered watch-only (admin and command,
validated per chain, who and why kept), hot limits proposed in the admin and applied only by a
second operator, an operator without the permission refused.
"""

from __future__ import annotations

from decimal import Decimal
from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from addresses import services as addresses_services
from addresses.models import AddressType, ColdAddressRegistration, WalletAddress
from controls import proposals as controls_proposals
from controls.models import SettingsChange
from treasury.models import HotThreshold
from wallet_project.roles import OPERATORS

ETH_COLD = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


def _staff(django_user_model, name: str, *, operator: bool = True):
    user = django_user_model.objects.create_user(name, password=f"{name}-password-1", is_staff=True)
    if operator:
        user.groups.add(Group.objects.get(name=OPERATORS))
    client = Client()
    client.force_login(user)
    return user, client


@pytest.mark.django_db
def test_an_operator_registers_a_cold_address_in_the_admin_watch_only_and_validated(django_user_model, staff_roles):
    ops, client = _staff(django_user_model, "ops")
    url = reverse("admin:addresses_walletaddress_register_cold")

    bad = client.post(
        url,
        {
            "chain_id": "ETH",
            "address": "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "wallet_type": "default",
            "remark": "vault A",
        },
    )
    wrong_chain = client.post(url, {"chain_id": "TRON", "address": ETH_COLD, "wallet_type": "default", "remark": "x"})
    done = client.post(
        url, {"chain_id": "ETH", "address": ETH_COLD.lower(), "wallet_type": "default", "remark": "vault A"}
    )
    again = client.post(url, {"chain_id": "ETH", "address": ETH_COLD, "wallet_type": "default", "remark": "vault A"})

    assert bad.status_code == wrong_chain.status_code == again.status_code == 200  # the form again, with the error
    assert done.status_code == 302
    (row,) = WalletAddress.objects.filter(address_type=AddressType.COLD)
    assert (row.address, row.key_secret_id) == (ETH_COLD, None)  # canonical (EIP-55), and no key
    registration = ColdAddressRegistration.objects.get(address=row)
    assert (registration.operator_id, registration.remark) == (ops.id, "vault A")
    assert b"one of the wallet" in again.content


@pytest.mark.django_db
def test_staff_without_the_permission_cannot_register_a_cold_address(django_user_model, staff_roles):
    _user, client = _staff(django_user_model, "support", operator=False)

    answer = client.post(
        reverse("admin:addresses_walletaddress_register_cold"),
        {"chain_id": "ETH", "address": ETH_COLD, "wallet_type": "default", "remark": "x"},
    )

    assert answer.status_code == 403
    assert not WalletAddress.objects.filter(address_type=AddressType.COLD).exists()


@pytest.mark.django_db
def test_the_cold_address_command_records_who_and_why(django_user_model, staff_roles):
    _staff(django_user_model, "ops")
    out = StringIO()

    call_command(
        "add_cold_address", "--chain", "ETH", "--address", ETH_COLD, "--by", "ops", "--reason", "vault B", stdout=out
    )
    with pytest.raises(CommandError, match=r"(?i)invalid|not valid|checksum"):
        call_command("add_cold_address", "--chain", "BTC", "--address", ETH_COLD, "--by", "ops", "--reason", "x")

    assert "watch-only" in out.getvalue()
    assert ColdAddressRegistration.objects.get().remark == "vault B"


@pytest.mark.django_db
def test_hot_limits_proposed_in_the_admin_apply_only_after_a_second_operator(django_user_model, staff_roles, hot_seeds):
    (hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw")
    alice, client = _staff(django_user_model, "alice")
    bob, _ = _staff(django_user_model, "bob")

    answer = client.post(
        reverse("admin:treasury_hotthreshold_propose"),
        {"address": hot.id, "coin": "USDT-ERC20", "min_balance": "1000", "max_balance": "500000", "remark": "policy"},
    )

    assert answer.status_code == 302
    change = SettingsChange.objects.get(kind="hot_threshold")
    assert not HotThreshold.objects.exists()
    controls_proposals.change_approve(change_id=change.id, user=bob)
    row = HotThreshold.objects.get()
    assert (row.coin_id, row.min_balance, row.max_balance) == ("USDT-ERC20", Decimal(1000), Decimal(500000))
    assert alice.id == change.proposed_by_id


@pytest.mark.django_db
def test_a_proposal_made_against_old_limits_goes_stale(django_user_model, staff_roles, hot_seeds):
    from treasury import thresholds

    (hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw")
    alice, _ = _staff(django_user_model, "alice")
    bob, _ = _staff(django_user_model, "bob")
    first = thresholds.threshold_propose(
        address_id=hot.id, coin_id="ETH", min_balance=None, max_balance=Decimal(5), user=alice, reason="a"
    )
    HotThreshold.objects.create(address=hot, coin_id="ETH", max_balance=Decimal(9))  # moved meanwhile

    controls_proposals.change_approve(change_id=first.id, user=bob)

    first.refresh_from_db()
    assert first.status == "STALE"
    assert HotThreshold.objects.get().max_balance == Decimal(9)


@pytest.mark.django_db
def test_limits_are_refused_for_a_coin_of_another_chain_or_min_above_max(django_user_model, staff_roles, hot_seeds):
    from treasury import thresholds
    from wallet_project.errors import WalletError

    (hot,) = addresses_services.hot_addresses_create(chain_id="ETH", wallet_type="withdraw")
    alice, _ = _staff(django_user_model, "alice")

    with pytest.raises(WalletError, match="not a coin of chain ETH"):
        thresholds.threshold_propose(
            address_id=hot.id, coin_id="TRX", min_balance=None, max_balance=Decimal(5), user=alice, reason="a"
        )
    with pytest.raises(WalletError, match="above"):
        thresholds.threshold_propose(
            address_id=hot.id, coin_id="ETH", min_balance=Decimal(6), max_balance=Decimal(5), user=alice, reason="a"
        )
