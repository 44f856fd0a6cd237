"""
Back-office accounts: a staff member allowed to manage users cannot raise anyone's privileges.

Django's stock UserAdmin lets whoever holds auth.change_user edit every field of every account,
their own included: tick "superuser", add a group, or set an auditor's password and log in as a
second auditor, which makes the two-auditor rule for large withdrawals one person's decision.
Only a superuser grants privileges or touches a staff account.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client

from wallet_project.testing import admin_form_data

pytestmark = pytest.mark.django_db

User = get_user_model()


def _staff(username: str, *codenames: str) -> User:
    member = User.objects.create_user(username, password=f"{username}-password-1", is_staff=True)
    member.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return member


@pytest.fixture
def account_manager() -> tuple[User, Client]:
    """A staff member who manages user accounts (view, add, change users), nothing else."""
    manager = _staff("ops-ann", "view_user", "change_user", "add_user", "view_group", "change_group")
    client = Client()
    client.force_login(manager)
    return manager, client


def _save(client: Client, url: str, *, unticked: tuple[str, ...] = (), **changes: object) -> None:
    form = admin_form_data(client.get(url).content.decode())
    for name in unticked:
        form.pop(name, None)
    client.post(url, {**form, **changes, "_save": "Save"})


def test_an_account_manager_cannot_make_themselves_superuser_or_give_themselves_a_permission(account_manager):
    manager, client = account_manager
    audit = Permission.objects.get(codename="audit_withdrawrecord")

    _save(client, f"/admin/auth/user/{manager.pk}/change/", is_superuser="on", user_permissions=[str(audit.pk)])

    manager.refresh_from_db()
    assert manager.is_superuser is False
    assert not manager.has_perm("withdrawals.audit_withdrawrecord")


def test_an_account_manager_cannot_set_an_auditors_password(account_manager):
    _, client = account_manager
    auditor = _staff("auditor-bo", "view_withdrawrecord", "audit_withdrawrecord")

    client.post(
        f"/admin/auth/user/{auditor.pk}/password/",
        {"password1": "taken-over-Pw-991", "password2": "taken-over-Pw-991", "usable_password": "true"},
    )

    auditor.refresh_from_db()
    assert auditor.check_password("auditor-bo-password-1")
    assert not auditor.check_password("taken-over-Pw-991")


def test_an_account_manager_cannot_give_their_group_the_audit_permission(account_manager):
    manager, client = account_manager
    group = Group.objects.create(name="Account managers")
    manager.groups.add(group)
    audit = Permission.objects.get(codename="audit_withdrawrecord")

    _save(client, f"/admin/auth/group/{group.pk}/change/", permissions=[str(audit.pk)])

    assert not group.permissions.filter(pk=audit.pk).exists()
    assert not User.objects.get(pk=manager.pk).has_perm("withdrawals.audit_withdrawrecord")


def test_an_account_manager_still_deactivates_a_customer_account(account_manager):
    _, client = account_manager
    customer = User.objects.create_user("carol", password="carol-password-1")

    _save(client, f"/admin/auth/user/{customer.pk}/change/", unticked=("is_active",))

    customer.refresh_from_db()
    assert customer.is_active is False


def test_a_superuser_still_grants_privileges(account_manager):
    manager, _ = account_manager
    root = Client()
    root.force_login(User.objects.create_superuser("root", "root@localhost", "root-password-1"))
    audit = Permission.objects.get(codename="audit_withdrawrecord")

    _save(root, f"/admin/auth/user/{manager.pk}/change/", user_permissions=[str(audit.pk)])

    assert User.objects.get(pk=manager.pk).has_perm("withdrawals.audit_withdrawrecord")
