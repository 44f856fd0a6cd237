"""
The back-office rules, held over every registered ModelAdmin (default-deny), not over a list of admins:

- No admin form writes a money, address, key, chain-state or audit table. A superuser's POST to the
  change, add or delete view of any registered model outside ALLOWED_FORMS is refused (403) and
  writes nothing: Django's Save re-writes every column it read, unlocked, over whatever a service
  committed meanwhile (a withdrawal paid twice, an address given to two users).
- Every admin action declares a permission beyond view, and a staff member with only view
  permissions who POSTs any action changes nothing.
"""

from __future__ import annotations

import datetime
import itertools
import uuid
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, models
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from wallet_project.testing import admin_form_data

# Configuration tables whose admin form may edit rows, and why each is safe. Everything else
# registered in the admin is read-only; a new model is covered without anyone adding it here.
ALLOWED_FORMS = {
    # Back-office accounts and their permissions: who may do what here.
    "auth.User",
    "auth.Group",
    # django-celery-beat's schedules: when the scanner, confirmation and payout jobs run. Their
    # actions (enable, disable, run) need the change permission (wallet_project.admin).
    "django_celery_beat.PeriodicTask",
    "django_celery_beat.IntervalSchedule",
    "django_celery_beat.CrontabSchedule",
    "django_celery_beat.SolarSchedule",
    "django_celery_beat.ClockedSchedule",
    # Coin settings: the admin's Save goes through coins.services.coin_save, which locks the row,
    # writes only the changed fields and enforces the native/contract rule.
    "coins.CoinConfig",
}

REGISTRY = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)
GUARDED = [model for model, _ in REGISTRY if model._meta.label not in ALLOWED_FORMS]


def _action_params() -> list:
    params = []
    for model, model_admin in REGISTRY:
        for _func, name, _description in model_admin._get_base_actions():
            params.append(pytest.param(model, name, id=f"{model._meta.label}:{name}"))
    return params


ACTIONS = _action_params()

# --- one row of any model, built from its fields' types -------------------------------------------

_serial = itertools.count(1)
# Field values a table's CHECK constraints need beyond the type's plain value.
_OVERRIDES = {
    "withdrawals.WithdrawRecord": {"amount": Decimal(1), "actual_amount": Decimal(1)},
    "withdrawals.PayoutWithdrawal": {"amount": Decimal(1)},
    "treasury.TreasuryTransfer": {"amount": Decimal(1)},
    "assets.HouseFlow": {
        "business_type": 21,
        "amount": Decimal(-1),
        "balance_before": Decimal(0),
        "balance_after": Decimal(-1),
    },
}


def _row(model: type[models.Model]) -> models.Model:
    """Save and return a row of model with a plain value in every required field."""
    label = model._meta.label
    if label == "coins.CoinConfig":
        return model.objects.get(coin_id="ETH")
    if model is get_user_model():
        return model.objects.create_user(f"owner{next(_serial)}", password="owner-password-1")
    if label == "django_celery_beat.PeriodicTask":
        from django_celery_beat.models import IntervalSchedule

        interval = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
        return model.objects.create(name=f"task{next(_serial)}", task="wallet.noop", interval=interval)
    values = dict(_OVERRIDES.get(label, {}))
    for field in model._meta.concrete_fields:
        if field.name in values or field.primary_key or field.generated or field.has_default() or field.null:
            continue
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            continue
        values[field.name] = _value(field)
    return model.objects.create(**values)


def _value(field: models.Field) -> object:
    n = next(_serial)
    if field.is_relation:
        return _row(field.related_model)
    if field.choices:
        return field.choices[0][0]
    if isinstance(field, models.DecimalField):
        return Decimal(0)
    if isinstance(field, models.BooleanField):
        return False
    if isinstance(field, models.IntegerField):
        return n
    if isinstance(field, models.DateTimeField):
        return timezone.now()
    if isinstance(field, models.DateField):
        return datetime.date.today()
    if isinstance(field, models.UUIDField):
        return uuid.uuid4()
    if isinstance(field, models.JSONField):
        return {}
    if isinstance(field, models.BinaryField):
        return b"\x00"
    if isinstance(field, (models.CharField, models.TextField)):
        return f"x{n}"[: field.max_length or 100]
    raise AssertionError(f"no plain value for {field!r}: add one to the builder")


def _snapshot() -> dict[str, list[dict]]:
    """Every registered table's rows, to compare before and after a request."""
    return {model._meta.label: list(model.objects.order_by("pk").values()) for model, _ in REGISTRY}


def _writes_to(model: type[models.Model], queries: list[dict]) -> list[str]:
    table = connection.ops.quote_name(model._meta.db_table)
    return [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE") and table in q["sql"]
    ]


def _url(model: type[models.Model], suffix: str) -> str:
    return f"/admin/{model._meta.app_label}/{model._meta.model_name}/{suffix}"


@pytest.fixture
def superuser_client(db) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1"))
    return client


@pytest.fixture
def viewer_client(db) -> Client:
    viewer = get_user_model().objects.create_user("viewer", password="viewer-password-1", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = Client()
    client.force_login(viewer)
    return client


def test_the_allow_list_names_registered_admins_only():
    registered = {model._meta.label for model, _ in REGISTRY}

    assert ALLOWED_FORMS <= registered


@pytest.mark.parametrize("model", GUARDED, ids=lambda m: m._meta.label)
def test_a_superusers_save_on_a_change_page_is_refused_and_writes_nothing(model, superuser_client):
    row = _row(model)
    page = superuser_client.get(_url(model, f"{row.pk}/change/"))
    form = admin_form_data(page.content.decode())
    before = model.objects.filter(pk=row.pk).values().get()

    with CaptureQueriesContext(connection) as queries:
        response = superuser_client.post(_url(model, f"{row.pk}/change/"), {**form, "_save": "Save"})

    assert page.status_code == 200  # shown, read-only
    assert response.status_code == 403
    assert model.objects.filter(pk=row.pk).values().get() == before
    assert _writes_to(model, queries.captured_queries) == []


@pytest.mark.parametrize("model", GUARDED, ids=lambda m: m._meta.label)
def test_a_superuser_can_neither_add_nor_delete_a_row(model, superuser_client):
    row = _row(model)
    count = model.objects.count()

    added = superuser_client.post(_url(model, "add/"), {"_save": "Save"})
    deleted = superuser_client.post(_url(model, f"{row.pk}/delete/"), {"post": "yes"})
    bulk = superuser_client.post(
        _url(model, ""), {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )

    assert (added.status_code, deleted.status_code) == (403, 403)
    assert bulk.status_code in (200, 302)  # the changelist, with the action not offered
    assert model.objects.count() == count and model.objects.filter(pk=row.pk).exists()


@pytest.mark.parametrize(("model", "name"), ACTIONS)
def test_every_action_needs_a_permission_beyond_view(model, name):
    func = next(f for f, n, _ in admin.site._registry[model]._get_base_actions() if n == name)

    needed = set(getattr(func, "allowed_permissions", ()))

    assert needed - {"view"}, f"{model._meta.label} action {name} runs for anyone who may view the list"


@pytest.mark.parametrize(("model", "name"), ACTIONS)
def test_a_view_only_staff_member_who_posts_an_action_changes_nothing(model, name, viewer_client):
    row = _row(model)
    before = _snapshot()

    response = viewer_client.post(
        _url(model, ""),
        {
            "action": name,
            "_selected_action": [row.pk],
            "index": "0",
            # What each action's confirmation form asks for, so that an action running without
            # its permission would run to the end.
            "apply": "1",
            "post": "yes",
            "remark": "view-only staff",
            "from_height": "0",
            "to_height": "0",
        },
    )

    assert response.status_code in (200, 302, 403)
    assert _snapshot() == before
