"""JWT, the error shape, health, metrics, the OpenAPI schema and the admin login page."""

from __future__ import annotations

import pytest
from django.test import override_settings

pytestmark = pytest.mark.django_db


class TestTokenApi:
    def test_issues_and_refreshes_a_token_that_opens_the_api(self, api_client, user):
        tokens = api_client.post(
            "/api/v1/auth/token", {"username": "alice", "password": "alice-password-1"}, format="json"
        ).json()
        refreshed = api_client.post("/api/v1/auth/token/refresh", {"refresh": tokens["refresh"]}, format="json")

        api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {refreshed.json()['access']}")
        assert api_client.get("/api/v1/balances").status_code == 200

    def test_refuses_a_wrong_password_in_the_error_shape(self, api_client, user):
        response = api_client.post("/api/v1/auth/token", {"username": "alice", "password": "nope"}, format="json")

        assert response.status_code == 401
        assert response.json()["code"] == "no_active_account"

    def test_reports_missing_fields(self, api_client):
        response = api_client.post("/api/v1/auth/token", {}, format="json")

        assert response.status_code == 400
        assert set(response.json()["fields"]) == {"username", "password"}


class TestHealthApi:
    def test_is_ok_when_database_cache_and_broker_answer(self, api_client):
        response = api_client.get("/api/v1/wallet/health")

        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert {name: check["status"] for name, check in body["checks"].items()} == {
            "database": "ok",
            "cache": "ok",
            "broker": "ok",
        }

    def test_is_503_when_the_broker_is_down(self, api_client):
        with override_settings(CELERY_BROKER_URL="amqp://guest:guest@127.0.0.1:1//"):
            response = api_client.get("/api/v1/wallet/health")

        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "down" and body["checks"]["broker"]["status"] == "down"
        assert "127.0.0.1" not in str(body)


class TestPlatformPages:
    def test_serves_prometheus_metrics(self, client):
        response = client.get("/metrics")

        assert response.status_code == 200
        assert b"django_http_requests_total" in response.content

    def test_serves_the_openapi_schema_and_swagger(self, client):
        assert b"/api/v1/balances" in client.get("/api/schema").content
        assert client.get("/api/docs").status_code == 200

    def test_serves_the_admin_login_page(self, client):
        response = client.get("/admin/login/")

        assert response.status_code == 200
        assert "Exchange wallet — back office" in response.content.decode()


class TestCachedUserAuthentication:
    def test_refuses_a_deactivated_user_once_the_cached_row_expires(self, auth_client, user, settings):
        from django.core.cache import cache

        assert auth_client.get("/api/v1/balances").status_code == 200
        user.is_active = False
        user.save(update_fields=["is_active"])

        cache.clear()  # what AUTH_USER_CACHE_SECONDS does after a few seconds
        response = auth_client.get("/api/v1/balances")

        assert response.status_code == 401

    def test_loads_the_user_without_a_query_while_cached(self, auth_client, django_assert_num_queries):
        auth_client.get("/api/v1/balances")

        with django_assert_num_queries(1):  # the balances, not the user
            assert auth_client.get("/api/v1/balances").status_code == 200
