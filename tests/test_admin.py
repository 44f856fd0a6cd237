"""The back-office: every model of the wallet's apps is in the admin, and money is never edited there."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model

WALLET_APPS = ("coins", "chains", "addresses", "recharges", "withdrawals", "assets", "monitoring")
WALLET_MODELS = [m for m in apps.get_models() if m._meta.app_label in WALLET_APPS]
# Money, chain state and the audit trail change only through services.
READ_ONLY = [
    "assets.Balance",
    "assets.Flow",
    "assets.OutboxMessage",
    "recharges.RechargeRecord",
    "recharges.RecentBlock",
    "recharges.ScanCursor",
    "withdrawals.WithdrawAuditLog",
    "chains.NonceCursor",
    "withdrawals.Payout",
    "withdrawals.PayoutTx",
    "withdrawals.PayoutWithdrawal",
]


@pytest.mark.parametrize("model", WALLET_MODELS, ids=lambda m: m._meta.label)
def test_every_model_is_registered_and_its_list_renders(model, client, db):
    assert model in admin.site._registry
    client.force_login(get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1"))

    response = client.get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/")

    assert response.status_code == 200


@pytest.mark.parametrize("label", READ_ONLY)
def test_money_and_chain_state_cannot_be_added_changed_or_deleted(label, rf, db):
    model_admin = admin.site._registry[apps.get_model(label)]
    request = rf.get("/")
    request.user = get_user_model().objects.create_superuser("root", "root@localhost", "root-password-1")

    allowed = (
        model_admin.has_add_permission(request),
        model_admin.has_change_permission(request),
        model_admin.has_delete_permission(request),
    )

    assert allowed == (False, False, False)
