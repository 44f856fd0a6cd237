"""
The backup key and the encrypted file format of backups.

The backup key (32 bytes, base64) comes from BACKUP_KEY or the file BACKUP_KEY_FILE, never from
the database and never the vault's key-encryption key: whoever holds backups and this key can
read the database, but still no private key (those stay sealed under the KEK inside).

A backup file is `WBK1` + 12-byte nonce + AES-256-GCM ciphertext of the gzip-compressed content
+ 16-byte tag, with the backup's name and the file's name as associated data (a file renamed or
moved to another backup does not decrypt). Encryption and decryption stream: a dump of any size
passes through in chunks. Decrypted content is written to a file and used only after the tag
verified. The manifest is authenticated by an HMAC under a key derived from the backup key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

MAGIC = b"WBK1"
NONCE_BYTES = 12
TAG_BYTES = 16
CHUNK = 1 << 20


class BackupError(Exception):
    """A backup could not be written, verified or restored; the message says why, never a key."""


@dataclass(frozen=True)
class BackupKey:
    secret: bytes = field(repr=False)

    def _derive(self, purpose: bytes) -> bytes:
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"wallet-backup/1 " + purpose).derive(
            self.secret
        )

    @property
    def file_key(self) -> bytes:
        return self._derive(b"file")

    @property
    def manifest_key(self) -> bytes:
        return self._derive(b"manifest")

    @property
    def key_id(self) -> str:
        """A public name of the key (in manifests): which key a backup needs, without revealing it."""
        return hashlib.sha256(b"wallet-backup/1 key-id " + self.secret).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"BackupKey(id={self.key_id})"


def _decode(text: str, source: str) -> bytes:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    if len(lines) != 1:
        raise ImproperlyConfigured(f"{source} must hold one base64 key of 32 bytes")
    try:
        key = base64.b64decode(lines[0], validate=True)
    except (binascii.Error, ValueError):
        raise ImproperlyConfigured(f"{source} is not base64") from None
    if len(key) != 32:
        raise ImproperlyConfigured(f"{source} must be 32 bytes")
    return key


def _kek_texts() -> str:
    text = os.environ.get("WALLET_KEK", "")
    if settings.WALLET_KEK_FILE:
        try:
            text += "\n" + Path(settings.WALLET_KEK_FILE).read_text()
        except OSError:
            pass
    return text


def backup_key_load() -> BackupKey:
    """
    Return the backup key given to this process.

    :raises ImproperlyConfigured: none given in production, malformed, or equal to a KEK.
    """
    if os.environ.get("BACKUP_KEY", "").strip():
        key = _decode(os.environ["BACKUP_KEY"], "BACKUP_KEY")
    elif settings.BACKUP_KEY_FILE:
        try:
            key = _decode(Path(settings.BACKUP_KEY_FILE).read_text(), "BACKUP_KEY_FILE")
        except OSError:
            raise ImproperlyConfigured("BACKUP_KEY_FILE cannot be read") from None
    elif settings.PRODUCTION:
        raise ImproperlyConfigured("backups need a key: set BACKUP_KEY or BACKUP_KEY_FILE")
    else:
        key = _decode(_dev_key_text(), "the development backup key file")
    if base64.b64encode(key).decode() in _kek_texts():
        raise ImproperlyConfigured("the backup key must not be the key-encryption key of the vault")
    return BackupKey(secret=key)


def _dev_key_text() -> str:
    path = Path(settings.VAR_DIR) / "DEV-ONLY-backup-key.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                "# DEVELOPMENT ONLY backup key, generated because neither BACKUP_KEY nor BACKUP_KEY_FILE is set.\n"
                + base64.b64encode(secrets.token_bytes(32)).decode()
                + "\n"
            )
        logger.warning("generated a development-only backup key file at %s", path)
    return path.read_text()


# --- files -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SealedFile:
    name: str
    size_bytes: int
    sha256: str  # of the encrypted file as stored
    plain_bytes: int
    plain_sha256: str  # of the content before compression and encryption


def _associated_data(backup_name: str, file_name: str) -> bytes:
    return f"wallet-backup/1|{backup_name}|{file_name}".encode()


def seal_stream(*, key: BackupKey, source: BinaryIO, target: Path, backup_name: str) -> SealedFile:
    """Compress and encrypt source (read to its end) into target; return the file's checksums."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    encryptor = Cipher(algorithms.AES(key.file_key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(_associated_data(backup_name, target.name))
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip framing
    plain_hash, stored_hash = hashlib.sha256(), hashlib.sha256()
    plain_bytes = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:

        def write(data: bytes) -> None:
            if data:
                stored_hash.update(data)
                out.write(data)

        write(MAGIC + nonce)
        while chunk := source.read(CHUNK):
            plain_hash.update(chunk)
            plain_bytes += len(chunk)
            write(encryptor.update(compressor.compress(chunk)))
        write(encryptor.update(compressor.flush()))
        write(encryptor.finalize())
        write(encryptor.tag)
        out.flush()
        os.fsync(out.fileno())
    return SealedFile(
        name=target.name,
        size_bytes=target.stat().st_size,
        sha256=stored_hash.hexdigest(),
        plain_bytes=plain_bytes,
        plain_sha256=plain_hash.hexdigest(),
    )


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _chunks(handle: BinaryIO, end: int) -> Iterator[bytes]:
    while handle.tell() < end:
        yield handle.read(min(CHUNK, end - handle.tell()))


def _decryptor(*, key: BackupKey, handle: BinaryIO, size: int, name: str, backup_name: str):
    if handle.read(len(MAGIC)) != MAGIC:
        raise BackupError(f"{name} is not a backup file (bad magic)")
    nonce = handle.read(NONCE_BYTES)
    handle.seek(size - TAG_BYTES)
    tag = handle.read(TAG_BYTES)
    handle.seek(len(MAGIC) + NONCE_BYTES)
    decryptor = Cipher(algorithms.AES(key.file_key), modes.GCM(nonce, tag)).decryptor()
    decryptor.authenticate_additional_data(_associated_data(backup_name, name))
    return decryptor


def open_sealed(*, key: BackupKey, source: Path, target: BinaryIO, backup_name: str) -> tuple[int, str]:
    """
    Decrypt and decompress source into target; return (bytes, sha256) of the content.

    Two passes: the first only checks the authentication tag, so no byte of an altered or foreign
    file is ever decompressed or handed on; the second writes the content.
    :raises BackupError: not a backup file, the wrong key, or a changed byte anywhere.
    """
    size = source.stat().st_size
    if size < len(MAGIC) + NONCE_BYTES + TAG_BYTES:
        raise BackupError(f"{source.name} is too short to be a backup file")
    with source.open("rb") as handle:
        decryptor = _decryptor(key=key, handle=handle, size=size, name=source.name, backup_name=backup_name)
        try:
            for chunk in _chunks(handle, size - TAG_BYTES):
                decryptor.update(chunk)
            decryptor.finalize()
        except InvalidTag:
            raise BackupError(f"{source.name} does not decrypt: wrong backup key, or the file was altered") from None
    digest = hashlib.sha256()
    total = 0
    with source.open("rb") as handle:
        decryptor = _decryptor(key=key, handle=handle, size=size, name=source.name, backup_name=backup_name)
        decompressor = zlib.decompressobj(31)
        for chunk in _chunks(handle, size - TAG_BYTES):
            plain = decompressor.decompress(decryptor.update(chunk))
            digest.update(plain)
            total += len(plain)
            target.write(plain)
        decryptor.finalize()
        rest = decompressor.flush()
        digest.update(rest)
        total += len(rest)
        target.write(rest)
    return total, digest.hexdigest()


# --- manifests -------------------------------------------------------------------------------------


def _canonical(document: dict[str, object]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def manifest_write(*, key: BackupKey, path: Path, manifest: dict[str, object]) -> str:
    """Write the manifest with its HMAC; return the sha256 of the file written."""
    document = dict(manifest)
    document["hmac_sha256"] = hmac.new(key.manifest_key, _canonical(manifest), hashlib.sha256).hexdigest()
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    path.write_text(text)
    return hashlib.sha256(text.encode()).hexdigest()


def manifest_read(*, key: BackupKey, path: Path) -> dict[str, object]:
    """
    Return a manifest after checking its HMAC.

    :raises BackupError: unreadable, made with another backup key, or altered.
    """
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        raise BackupError(f"{path} is not a readable manifest") from None
    claimed = document.pop("hmac_sha256", "")
    if document.get("key_id") != key.key_id:
        raise BackupError(f"{path.parent.name} was made with backup key {document.get('key_id')}, not {key.key_id}")
    expected = hmac.new(key.manifest_key, _canonical(document), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(str(claimed), expected):
        raise BackupError(f"the manifest of {path.parent.name} was altered")
    return document
