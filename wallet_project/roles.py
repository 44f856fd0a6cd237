"""
The back office's roles: Django groups with exactly the permissions each job needs, and the
staff accounts that hold them.

A role's permissions change only by a migration in wallet_project/migrations that declares
GRANTS (and, to take one away, REVOKES) as {group name: ["app_label.codename", ...]} and runs
`grant_operation(GRANTS)`; it depends on the migration of the app that defines each permission.
Adding a permission to a role later (sweeps, breakers) is one such migration, nothing else:

    GRANTS = {OPERATORS: ["chains.run_sweep"]}
    dependencies = [("wallet_project", "0001_roles"), ("chains", "0007_sweep")]
    operations = [grant_operation(GRANTS)]

wallet_project.testing.roles_seed replays these migrations after a transactional test flushed
the tables, so tests see the groups production has.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.apps.registry import Apps
from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import AbstractBaseUser, Group
from django.core.exceptions import ValidationError
from django.db import IntegrityError, migrations, transaction
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

from wallet_project.errors import WalletError

AUDITORS = "Auditors"
OPERATORS = "Operators"
# The --role names of create_staff_user, and the group each one joins.
ROLE_GROUPS = {"auditor": AUDITORS, "operator": OPERATORS}

Grants = Mapping[str, Iterable[str]]


def permissions_grant(*, apps: Apps, using: str, grants: Grants, revoke: bool = False) -> None:
    """
    Give each group (created if missing) the permissions listed for it, or take them away.

    Permissions are created first: Django creates them only after the last migration ran, and a
    role migration runs before that on a fresh database.
    :raises LookupError: a listed permission does not exist (a typo must stop the migration).
    """
    for app_config in apps.get_app_configs():
        # A historical app registry has no models modules, and create_permissions skips an app
        # without one: lend it one for the call.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        try:
            create_permissions(app_config, verbosity=0, using=using, apps=apps)
        finally:
            app_config.models_module = models_module
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    for group_name, names in grants.items():
        group, _ = group_model.objects.using(using).get_or_create(name=group_name)
        permissions = []
        for name in names:
            app_label, codename = name.split(".", 1)
            found = permission_model.objects.using(using).filter(content_type__app_label=app_label, codename=codename)
            if not found.exists():
                raise LookupError(f"no permission {name} for the {group_name} group")
            permissions.extend(found)
        if revoke:
            group.permissions.remove(*permissions)
            if not group.permissions.exists() and not group.user_set.exists():
                group.delete()  # the first role migration undone: nothing of the role is left
        else:
            group.permissions.add(*permissions)


def grant_operation(grants: Grants, *, revokes: Grants | None = None) -> migrations.RunPython:
    """Return the migration step that applies grants (and revokes), undone in reverse."""

    def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        using = schema_editor.connection.alias
        permissions_grant(apps=apps, using=using, grants=grants)
        if revokes:
            permissions_grant(apps=apps, using=using, grants=revokes, revoke=True)

    def backwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
        using = schema_editor.connection.alias
        permissions_grant(apps=apps, using=using, grants=grants, revoke=True)
        if revokes:
            permissions_grant(apps=apps, using=using, grants=revokes)

    return migrations.RunPython(forwards, backwards)


# --- staff accounts -----------------------------------------------------------------------------


class StaffUserRefused(WalletError):
    code = "staff_user_refused"


def staff_user_create(*, username: str, role: str, password: str, email: str = "") -> AbstractBaseUser:
    """
    Create a back-office account in one role: staff, not a superuser, a member of the role's group only.

    :raises StaffUserRefused: unknown role, missing group, bad or taken username, weak password.
    """
    group_name = ROLE_GROUPS.get(role)
    if group_name is None:
        raise StaffUserRefused(f"unknown role {role!r}: use one of {', '.join(ROLE_GROUPS)}", field="role")
    user_model = get_user_model()
    name = (username or "").strip()
    candidate = user_model(username=name, email=email, is_staff=True)
    try:
        candidate.full_clean(exclude=["password"], validate_unique=False)
    except ValidationError as error:
        raise StaffUserRefused(_one_line(error), field="username") from None
    try:
        password_validation.validate_password(password, user=candidate)
    except ValidationError as error:
        raise StaffUserRefused(_one_line(error), field="password") from None
    return _staff_user_save(candidate=candidate, password=password, group_name=group_name)


@transaction.atomic(durable=True)
def _staff_user_save(*, candidate: AbstractBaseUser, password: str, group_name: str) -> AbstractBaseUser:
    group = Group.objects.filter(name=group_name).first()
    if group is None:
        raise StaffUserRefused(f"the {group_name} group does not exist: run `manage.py migrate` first", field="role")
    if type(candidate).objects.filter(username=candidate.get_username()).exists():
        raise StaffUserRefused(f"a user named {candidate.get_username()!r} exists already", field="username")
    candidate.set_password(password)
    try:
        with transaction.atomic():
            candidate.save()
    except IntegrityError:  # created meanwhile by someone else
        raise StaffUserRefused(f"a user named {candidate.get_username()!r} exists already", field="username") from None
    candidate.groups.add(group)
    return candidate


def _one_line(error: ValidationError) -> str:
    messages: Iterable[str] = (
        [f"{field}: {m}" for field, items in error.message_dict.items() for m in items]
        if hasattr(error, "error_dict")
        else error.messages
    )
    return " ".join(messages)
