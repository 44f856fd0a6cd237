"""Disabling and enabling an address: a service under the row lock, an admin action with its own permission."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from addresses import services
from addresses.models import AddressStatus, AddressStatusChange, WalletAddress
from wallet_project.errors import WalletError

URL = "/admin/addresses/walletaddress/"


@pytest.fixture
def ops(db):
    return get_user_model().objects.create_user("ops", password="ops-password-1", is_staff=True)


def _grant(user, *codenames: str) -> Client:
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
class TestAddressStatusSet:
    def test_disables_an_assigned_address_keeping_its_owner_and_records_who_and_why(self, deposit_seeds, user, ops):
        assigned = services.deposit_address_assign(user=user, coin_id="ETH")

        row = services.address_status_set(
            address_id=assigned.id, status=AddressStatus.DISABLED, operator_id=ops.id, remark="key exposure drill"
        )

        stored = WalletAddress.objects.get(id=assigned.id)
        assert (stored.status, stored.user_id, stored.assign_time) == (
            AddressStatus.DISABLED,
            user.id,
            assigned.assign_time,
        )
        assert row.status == AddressStatus.DISABLED
        change = AddressStatusChange.objects.get()
        assert (change.address_id, change.from_status, change.to_status, change.operator_id, change.remark) == (
            assigned.id,
            AddressStatus.NORMAL,
            AddressStatus.DISABLED,
            ops.id,
            "key exposure drill",
        )

    def test_writes_only_the_status_over_a_copy_read_before_an_assignment(self, deposit_seeds, user, ops):
        services.address_pool_fill(chain_id="ETH", count=1)
        pool_row = WalletAddress.objects.get(chain_id="ETH")  # what an admin page showed: no owner yet
        services.deposit_address_assign(user=user, coin_id="ETH")

        services.address_status_set(
            address_id=pool_row.id, status=AddressStatus.DISABLED, operator_id=ops.id, remark="reported"
        )

        assert WalletAddress.objects.get(id=pool_row.id).user_id == user.id

    @pytest.mark.parametrize(
        ("status", "remark", "code"),
        [
            (AddressStatus.NORMAL, "enable an enabled one", "address_status_conflict"),
            (AddressStatus.DISABLED, " ", "remark_required"),
        ],
    )
    def test_refuses_a_change_from_the_wrong_status_or_without_a_remark(self, deposit_seeds, ops, status, remark, code):
        services.address_pool_fill(chain_id="ETH", count=1)
        row = WalletAddress.objects.get(chain_id="ETH")

        with pytest.raises(WalletError) as refused:
            services.address_status_set(address_id=row.id, status=status, operator_id=ops.id, remark=remark)

        assert refused.value.code == code
        assert WalletAddress.objects.get(id=row.id).status == AddressStatus.NORMAL
        assert AddressStatusChange.objects.count() == 0

    def test_a_disabled_pool_address_is_never_handed_out(self, deposit_seeds, user, ops):
        services.address_pool_fill(chain_id="ETH", count=2)
        first, second = WalletAddress.objects.filter(chain_id="ETH").order_by("id")
        services.address_status_set(address_id=first.id, status=AddressStatus.DISABLED, operator_id=ops.id, remark="x")

        assigned = services.deposit_address_assign(user=user, coin_id="ETH")

        assert assigned.id == second.id

    def test_a_user_whose_deposit_address_is_disabled_is_refused_instead_of_given_it(self, deposit_seeds, user, ops):
        assigned = services.deposit_address_assign(user=user, coin_id="ETH")
        services.address_status_set(
            address_id=assigned.id, status=AddressStatus.DISABLED, operator_id=ops.id, remark="compromised"
        )

        with pytest.raises(services.DepositAddressDisabled):
            services.deposit_address_assign(user=user, coin_id="USDT-ERC20")

    def test_an_enabled_address_is_handed_out_again(self, deposit_seeds, user, ops):
        assigned = services.deposit_address_assign(user=user, coin_id="ETH")
        for status in (AddressStatus.DISABLED, AddressStatus.NORMAL):
            services.address_status_set(address_id=assigned.id, status=status, operator_id=ops.id, remark="drill")

        again = services.deposit_address_assign(user=user, coin_id="ETH")

        assert again.id == assigned.id
        assert AddressStatusChange.objects.count() == 2


@pytest.mark.django_db
class TestAddressStatusAdmin:
    def test_the_disable_action_asks_for_a_remark_then_disables_and_logs(self, deposit_seeds, ops):
        services.address_pool_fill(chain_id="ETH", count=1)
        row = WalletAddress.objects.get(chain_id="ETH")
        client = _grant(ops, "view_walletaddress", "change_address_status")
        chosen = {"action": "disable_addresses", "_selected_action": [row.id]}

        asked = client.post(URL, chosen)
        done = client.post(URL, {**chosen, "apply": "1", "remark": "address reported by the user"})

        assert asked.status_code == 200 and b'name="remark"' in asked.content
        assert done.status_code == 302
        assert WalletAddress.objects.get(id=row.id).status == AddressStatus.DISABLED
        change = AddressStatusChange.objects.get()
        assert (change.operator_id, change.remark) == (ops.id, "address reported by the user")
        from django.contrib.admin.models import LogEntry

        assert LogEntry.objects.get(object_id=str(row.id)).user_id == ops.id

    def test_view_permission_alone_cannot_disable_an_address(self, deposit_seeds, ops):
        services.address_pool_fill(chain_id="ETH", count=1)
        row = WalletAddress.objects.get(chain_id="ETH")
        client = _grant(ops, "view_walletaddress")

        client.post(URL, {"action": "disable_addresses", "_selected_action": [row.id], "apply": "1", "remark": "x"})

        assert WalletAddress.objects.get(id=row.id).status == AddressStatus.NORMAL
        assert AddressStatusChange.objects.count() == 0
