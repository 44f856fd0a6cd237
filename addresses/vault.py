"""
The key vault's cryptography: key-encryption keys (KEKs) and AES-256-GCM.

Imported by addresses.signer only (a test checks): every decryption of a seed or private key
goes through the signer module.

KEKs come from outside the database: WALLET_KEK (base64 of 32 bytes, meaning version 1, or
"version:base64" pairs separated by commas) and/or the file WALLET_KEK_FILE with the same text
(lines starting with # are ignored). Production refuses to start without one (settings.py); in
development a throwaway KEK is generated once into var/DEV-ONLY-wallet-kek.txt.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

NONCE_BYTES = 12
KEK_BYTES = 32


class VaultError(Exception):
    """A secret could not be decrypted (wrong KEK, missing version or tampered row).

    The message names the row and version only, never key material.
    """


@dataclass(frozen=True)
class Keyring:
    keys: dict[int, bytes] = field(repr=False)
    current_version: int

    def __repr__(self) -> str:
        return f"Keyring(versions={sorted(self.keys)}, current_version={self.current_version})"


def _parse(text: str, source: str) -> dict[int, bytes]:
    keys: dict[int, bytes] = {}
    items = [
        item.strip()
        for line in text.splitlines()
        if not line.strip().startswith("#")
        for item in line.split(",")
        if item.strip()
    ]
    for item in items:
        version_text, sep, encoded = item.rpartition(":")
        if not sep:
            version_text, encoded = "1", item
        if not version_text.isdigit() or int(version_text) < 1:
            raise ImproperlyConfigured(f"{source}: a KEK version must be a positive integer")
        try:
            key = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"{source}: KEK version {version_text} is not base64") from None
        if len(key) != KEK_BYTES:
            raise ImproperlyConfigured(f"{source}: KEK version {version_text} must be 32 bytes")
        if int(version_text) in keys:
            raise ImproperlyConfigured(f"{source}: KEK version {version_text} given twice")
        keys[int(version_text)] = key
    return keys


def _dev_kek_text() -> str:
    path = Path(settings.WALLET_DEV_KEK_FILE)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        encoded = base64.b64encode(secrets.token_bytes(KEK_BYTES)).decode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                "# DEVELOPMENT ONLY key-encryption key, generated because neither WALLET_KEK nor\n"
                "# WALLET_KEK_FILE is set. Never use it for real funds.\n"
                f"1:{encoded}\n"
            )
        logger.warning("generated a development-only key-encryption key file at %s", path)
    return path.read_text()


def keyring_load() -> Keyring:
    """
    Return the KEKs given to this process.

    :raises ImproperlyConfigured: none given in production, malformed, or the current version missing.
    """
    keys: dict[int, bytes] = {}
    env_text = os.environ.get("WALLET_KEK", "")
    if env_text.strip():
        keys.update(_parse(env_text, "WALLET_KEK"))
    if settings.WALLET_KEK_FILE:
        try:
            file_text = Path(settings.WALLET_KEK_FILE).read_text()
        except OSError:
            raise ImproperlyConfigured("WALLET_KEK_FILE cannot be read") from None
        for version, key in _parse(file_text, "WALLET_KEK_FILE").items():
            if keys.get(version, key) != key:
                raise ImproperlyConfigured(f"WALLET_KEK and WALLET_KEK_FILE disagree on version {version}")
            keys[version] = key
    if not keys:
        if settings.PRODUCTION:
            raise ImproperlyConfigured("production needs the key-encryption key: set WALLET_KEK or WALLET_KEK_FILE")
        keys = _parse(_dev_kek_text(), "WALLET_DEV_KEK_FILE")
    current = settings.WALLET_KEK_VERSION or max(keys)
    if current not in keys:
        raise ImproperlyConfigured(f"WALLET_KEK_VERSION {current} is not among the given KEK versions")
    return Keyring(keys=keys, current_version=current)


def seal(*, keyring: Keyring, version: int, plaintext: bytes, associated_data: bytes) -> bytes:
    """Return nonce + AES-256-GCM ciphertext of plaintext under KEK `version`."""
    try:
        key = keyring.keys[version]
    except KeyError:
        raise VaultError(f"KEK version {version} is not loaded") from None
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def unseal(*, keyring: Keyring, version: int, sealed: bytes, associated_data: bytes) -> bytes:
    """
    Return the plaintext of a sealed secret.

    :raises VaultError: version not loaded, wrong key, or ciphertext/associated data altered.
    """
    try:
        key = keyring.keys[version]
    except KeyError:
        raise VaultError(f"KEK version {version} is not loaded") from None
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], bytes(sealed[NONCE_BYTES:]), associated_data)
    except InvalidTag:
        raise VaultError("the secret does not decrypt under its KEK version") from None
