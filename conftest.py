"""Fixtures shared by every app's tests."""

from __future__ import annotations

import os
import shutil

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

ON_MYSQL = settings.DATABASES["default"]["ENGINE"] == "wallet_project.db_backends.mysql"
HAVE_CHROMIUM = bool((shutil.which("chromium") or shutil.which("chromium-browser")) and shutil.which("chromedriver"))


def pytest_configure(config: pytest.Config) -> None:
    # CI proves the service against MariaDB and Redis; a run that fell back to SQLite or the
    # local-memory cache would pass while proving nothing about them.
    if os.environ.get("CI", "").lower() == "true":
        if not ON_MYSQL:
            raise pytest.UsageError("CI=true but DATABASE_URL is not MySQL/MariaDB")
        if not settings.REDIS_URL:
            raise pytest.UsageError("CI=true but REDIS_URL is not set")
        if not HAVE_CHROMIUM:
            raise pytest.UsageError("CI=true but chromium and chromedriver are not installed")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Row locks and concurrency need a real server. On a bare machine (SQLite) those tests are
    # skipped and say so; CI never gets here without MariaDB (see pytest_configure).
    for item in items:
        if "mysql" in item.keywords and not ON_MYSQL:
            item.add_marker(pytest.mark.skip(reason="needs MariaDB: set DATABASE_URL"))
        if "browser" in item.keywords and not HAVE_CHROMIUM:
            item.add_marker(pytest.mark.skip(reason="needs chromium and chromedriver (Debian packages)"))


@pytest.fixture(autouse=True)
def _coins_after_flush(request: pytest.FixtureRequest) -> None:
    # Transactional tests flush every table, the coin rows of the data migration included;
    # load them again so every test starts with the five coins.
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        request.getfixturevalue("transactional_db")
        from coins.testing import coins_seed

        coins_seed()


@pytest.fixture
def staff_roles(db) -> None:
    # The Auditors and Operators groups of the role migrations: a transactional test's flush
    # removed them along with every other row.
    from wallet_project.testing import roles_seed

    roles_seed()


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Cached rows (the API's user cache, the coin list) must not leak from one test's users
    # and coins into the next test, where ids can be reused.
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user(username="alice", password="alice-password-1")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user(username="bob", password="bob-password-1")


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def auth_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client
