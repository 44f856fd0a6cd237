"""The back-office: every model of the wallet's apps is in the admin (what it may edit: test_admin_rules)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model

WALLET_APPS = ("coins", "chains", "addresses", "recharges", "withdrawals", "assets", "monitoring")
WALLET_MODELS = [m for m in apps.get_models() if m._meta.app_label in WALLET_APPS]


@pytest.mark.parametrize("model", WALLET_MODELS, ids=lambda m: m._meta.label)
def test_every_model_is_registered_and_its_list_renders(model, client, db):
    assert model in admin.site._registry
    client.force_login(get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1"))

    response = client.get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/")

    assert response.status_code == 200
