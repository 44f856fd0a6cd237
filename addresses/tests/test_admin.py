"""Admin pages: addresses with chain, type, user, balance and status; the vault without any secret."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from addresses import services
from addresses.models import KeySecret


@pytest.fixture
def admin_client_recorded(db, leak_watch):
    admin = get_user_model().objects.create_superuser(username="auditor", password="auditor-password-1")
    client = Client()
    client.force_login(admin)
    original = client.request

    def request(**kwargs):
        response = original(**kwargs)
        leak_watch.texts.append(response.content.decode(errors="replace"))
        return response

    client.request = request
    return client


@pytest.mark.django_db
class TestAdmin:
    def test_lists_addresses_with_chain_type_user_region_and_status(self, deposit_seeds, admin_client_recorded, user):
        services.address_pool_fill(chain_id="ETH", count=3)
        assigned = services.deposit_address_assign(user=user, coin_id="ETH")

        page = admin_client_recorded.get("/admin/addresses/walletaddress/").content.decode()

        for heading in ("Chain id", "Address type", "User", "Region", "Status"):
            assert heading in page
        # The seed's balance column is not listed: nothing keeps it (real balances: monitoring_hot_balance).
        assert "column-balance" not in page
        assert assigned.address in page and "alice" in page and "user deposit address" in page

    def test_shows_the_vault_without_secrets_or_ciphertexts(
        self, deposit_seeds, hot_seeds, admin_client_recorded, leak_watch
    ):
        secret = KeySecret.objects.get(id=deposit_seeds["ETH"].id)

        listing = admin_client_recorded.get("/admin/addresses/keysecret/")
        detail = admin_client_recorded.get(f"/admin/addresses/keysecret/{secret.id}/change/")

        assert listing.status_code == 200 and detail.status_code == 200
        for page in (listing.content.decode(), detail.content.decode()):
            assert secret.fingerprint in page
            assert bytes(secret.ciphertext).hex() not in page
            assert secret.account_xpub not in page
            assert "ciphertext" not in page.lower()
            assert not leak_watch.hits(page)

    def test_the_vault_cannot_be_edited_or_deleted_from_the_admin(self, deposit_seeds, admin_client_recorded):
        secret = deposit_seeds["BTC"]

        response = admin_client_recorded.post(f"/admin/addresses/keysecret/{secret.id}/delete/", {"post": "yes"})

        assert response.status_code == 403
        assert KeySecret.objects.filter(id=secret.id).exists()
