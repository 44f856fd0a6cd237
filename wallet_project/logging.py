"""
Log context (request and task ids) and redaction.

Every log record passes RedactingFilter before it is formatted: anything shaped like a private
key, an extended key, a mnemonic, a JWT, a bearer token or a password assignment is masked,
whatever logger wrote it. It is a last line of defence; code still never logs secrets.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from django.http import HttpRequest, HttpResponse

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
task_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("task_id", default="")

MASK = "[REDACTED]"

# Each pattern masks its whole match except named group "keep" (a field name worth keeping).
_SECRET_PATTERNS: tuple[re.Pattern[str], ...] = (
    # Assignments such as password=..., "private_key": "...", seed: ..., mnemonic=...
    re.compile(
        r"(?P<keep>(?i:[\"']?(?:password|passwd|secret|private[_ ]?key|privkey|seed|mnemonic|"
        r"api[_-]?key|token|access|refresh|kek|authorization)[\"']?\s*[:=]\s*))"
        r"(?:\"[^\"]*\"|'[^']*'|[^\s,;&}]+)"
    ),
    re.compile(r"(?P<keep>(?i:bearer\s+))[A-Za-z0-9._~+/=-]+"),
    # JWTs: three base64url parts, the first being a JSON header.
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}"),
    # BIP32 extended private keys (mainnet and testnet, all script types).
    re.compile(r"\b[xtyzuv]prv[1-9A-HJ-NP-Za-km-z]{100,}\b"),
    # WIF private keys.
    re.compile(r"\b[5KLc9][1-9A-HJ-NP-Za-km-z]{50,51}\b"),
    # 32-byte hex strings with or without 0x: private keys. Hashes of transactions are 32
    # bytes too; masking one in a log line is the price of never printing a key.
    re.compile(r"\b(?:0x)?[0-9a-fA-F]{64}\b"),
    # Runs of 12 or more lowercase words: BIP39 mnemonics.
    re.compile(r"\b(?:[a-z]{3,8}\s+){11,23}[a-z]{3,8}\b"),
)


def redact(text: str) -> str:
    """Return text with everything secret-shaped masked."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.groupdict().get("keep") or "") + MASK, text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.task_id = task_id_var.get()
        return True


class RequestContextMiddleware:
    """Give each request an id (or keep the caller's X-Request-ID) for its log lines."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", incoming) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-ID"] = request_id
        return response


@contextlib.contextmanager
def console_logging_to_file(path: Path) -> Iterator[None]:
    """
    Within the block, send log records that would reach the console to path instead.

    For commands whose output is text for a person (demo_setup, demo_deposit): the same records,
    formatted and redacted as they would have been, go to the file. The console handlers are put
    back afterwards.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    swapped: list[tuple[logging.Logger, logging.Handler, logging.Handler]] = []
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in list(logger.handlers):
            if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
                continue  # a console handler (stdout, stderr) is replaced; other destinations stay
            to_file = logging.FileHandler(path)
            to_file.setFormatter(handler.formatter)
            to_file.setLevel(handler.level)
            for log_filter in handler.filters:
                to_file.addFilter(log_filter)
            logger.removeHandler(handler)
            logger.addHandler(to_file)
            swapped.append((logger, handler, to_file))
    try:
        yield
    finally:
        for logger, handler, to_file in swapped:
            logger.removeHandler(to_file)
            to_file.close()
            logger.addHandler(handler)
