"""GET /metrics: django-prometheus's exposition behind a bearer token (METRICS_TOKEN)."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from django_prometheus import exports


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Serve the metrics to a caller presenting METRICS_TOKEN; open in development when none is set."""
    token = settings.METRICS_TOKEN
    if token:
        supplied = request.headers.get("Authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {token}".encode()):
            return HttpResponse("a valid bearer token is needed\n", status=401, headers={"WWW-Authenticate": "Bearer"})
    elif settings.PRODUCTION:
        return HttpResponse("metrics are off: set METRICS_TOKEN\n", status=403)
    return exports.ExportToDjangoView(request)
