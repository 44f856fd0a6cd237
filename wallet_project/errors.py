"""
Domain errors and the one shape every API error takes.

Every error body is {"code": ..., "message": ..., "fields": {field: [messages]}}.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler
from rest_framework_simplejwt.exceptions import InvalidToken

logger = logging.getLogger(__name__)

# A message for the client, not a secret (ruff's S105 takes any "TOKEN" name for one).
INVALID_TOKEN_MESSAGE = "The token is invalid or expired: obtain a new one (auth/token or auth/token/refresh)."  # noqa: S105


class WalletError(Exception):
    """A refusal the caller can act on; rendered as HTTP 400 with `code`, `message`, `fields`."""

    code = "wallet_error"
    http_status = status.HTTP_400_BAD_REQUEST

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code

    def as_body(self) -> dict[str, Any]:
        fields = {self.field: [self.message]} if self.field else {}
        return {"code": self.code, "message": self.message, "fields": fields}


class NotFound(WalletError):
    """Missing, or someone else's: the two are indistinguishable on purpose."""

    code = "not_found"
    http_status = status.HTTP_404_NOT_FOUND


class Conflict(WalletError):
    code = "conflict"
    http_status = status.HTTP_409_CONFLICT


def _flatten(detail: Any) -> list[str]:
    if isinstance(detail, dict):
        return [f"{key}: {msg}" for key, value in detail.items() for msg in _flatten(value)]
    if isinstance(detail, list):
        return [msg for item in detail for msg in _flatten(item)]
    return [str(detail)]


def _field_errors(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Render domain and DRF errors in the one error shape; anything else stays a 500."""
    if isinstance(exc, WalletError):
        return Response(exc.as_body(), status=exc.http_status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        body = {"code": "invalid", "message": "The request has invalid fields.", "fields": _field_errors(exc.detail)}
    elif isinstance(exc, InvalidToken):
        # simplejwt's detail is a dict (detail, code, one message per token class tried) that would
        # be flattened into one unreadable line; whatever was wrong, the client does the same thing.
        body = {"code": InvalidToken.default_code, "message": INVALID_TOKEN_MESSAGE, "fields": {}}
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        message = " ".join(_flatten(detail))
        body = {"code": code if isinstance(code, str) else "error", "message": message, "fields": {}}
    response.data = body
    return response
