"""GET /api/v1/wallet/health: the liveness/readiness probe (seed 9.2)."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from kombu import Connection
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

logger = logging.getLogger(__name__)


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = "health:probe"
    cache.set(key, "1", 10)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was stored")


def _check_broker() -> None:
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
    with Connection(settings.CELERY_BROKER_URL, transport_options=options, connect_timeout=2) as broker:
        broker.ensure_connection(max_retries=1, timeout=2)


CHECKS = {"database": _check_database, "cache": _check_cache, "broker": _check_broker}


class HealthApi(APIView):
    """Database, cache and broker reachable: 200 {"status": "ok"}; any one down: 503."""

    permission_classes = [AllowAny]
    authentication_classes: list = []

    def get(self, request: Request) -> Response:
        results = {}
        healthy = True
        for name, check in CHECKS.items():
            started = time.perf_counter()
            try:
                check()
                results[name] = {"status": "ok", "ms": round((time.perf_counter() - started) * 1000, 1)}
            except Exception as error:  # any failure of a dependency makes the probe fail
                healthy = False
                # The error type only: messages of drivers can carry connection strings.
                results[name] = {"status": "down", "error": type(error).__name__}
                logger.warning("health check %s failed: %s", name, type(error).__name__)
        return Response({"status": "ok" if healthy else "down", "checks": results}, status=200 if healthy else 503)
