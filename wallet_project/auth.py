"""JWT authentication for the API, with the user row cached for a few seconds."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password


class CachedUserJWTAuthentication(JWTAuthentication):
    """
    simplejwt's authentication, remembering the token's user for AUTH_USER_CACHE_SECONDS.

    Every API read otherwise spends a query on loading the user before doing its own. A user
    deactivated in the back-office is refused once the cached row expires (seconds), well within
    an access token's lifetime; 0 turns the cache off. Tokens carry a hash of the password they were
    issued under (CHECK_REVOKE_TOKEN): a password change revokes every token issued before it (within
    the same few seconds for a cached row), and a token issued under the new password is never
    refused for a stale cached row.
    """

    def get_user(self, validated_token: Token) -> AbstractBaseUser:
        seconds = settings.AUTH_USER_CACHE_SECONDS
        if seconds <= 0:
            return super().get_user(validated_token)
        key = f"auth:user:{validated_token.get(api_settings.USER_ID_CLAIM)}"
        user = cache.get(key)
        if user is None:
            user = super().get_user(validated_token)  # refuses unknown, inactive and revoked
            cache.set(key, user, seconds)
        elif api_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            api_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            # Issued under another password than the cached row's: either the password changed
            # since the row was cached (a new token) or before the token was issued (a revoked
            # one). The database decides, and the row is cached again.
            user = super().get_user(validated_token)
            cache.set(key, user, seconds)
        return user
