"""The two logins, throttled (wallet_project/login_throttle.py): the API's token view and the admin's login form."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from rest_framework import exceptions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework_simplejwt.views import TokenObtainPairView

from wallet_project import login_throttle


class LoginThrottled(exceptions.Throttled):
    """429 in the one error shape, code login_throttled; DRF's handler adds the Retry-After header."""

    default_code = "login_throttled"

    def __init__(self, lock: login_throttle.LoginLock) -> None:
        # Not Throttled.__init__, which appends its own "Expected available in N seconds." sentence.
        exceptions.APIException.__init__(self, lock.message, self.default_code)
        self.wait = lock.retry_after


class TokenObtainApi(TokenObtainPairView):
    """POST auth/token: simplejwt's token pair, refused (429) while the username or address is locked out."""

    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = request.data
        attempt = login_throttle.LoginAttempt.of(request, data.get("username") if hasattr(data, "get") else None)
        lock = login_throttle.login_lock_find(attempt)
        if lock is not None:
            raise LoginThrottled(lock)
        try:
            response = super().post(request, *args, **kwargs)
        except exceptions.AuthenticationFailed:
            login_throttle.login_failed(attempt)
            raise
        login_throttle.login_succeeded(attempt)
        return response


class ThrottledAdminLoginForm(AdminAuthenticationForm):
    """The admin's login form, refusing with a clear message while the username or address is locked out."""

    def clean(self) -> dict[str, Any]:
        attempt = login_throttle.LoginAttempt.of(self.request, self.cleaned_data.get("username"))
        lock = login_throttle.login_lock_find(attempt)
        if lock is not None:
            raise ValidationError(lock.message, code="login_throttled")
        try:
            cleaned = super().clean()
        except ValidationError as error:
            if getattr(error, "code", None) == "invalid_login":
                login_throttle.login_failed(attempt)
            raise
        login_throttle.login_succeeded(attempt)
        return cleaned
