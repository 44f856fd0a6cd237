"""
A small JSON-RPC/HTTP client shared by the adapters: timeouts from settings, every failure as ChainError.

Node credentials may come in the URL (http://user:password@host:port/); they are sent as HTTP
basic auth and never appear in an error message.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

from chains.base import ChainError

# An RPC error message from a node is kept to this many characters (never a whole payload).
MAX_MESSAGE = 200


class RpcError(ChainError):
    """The node answered the call with an error object (as opposed to being unreachable)."""

    def __init__(self, message: str, *, code: int | None = None, node_message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.node_message = node_message


def url_without_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """Split http://user:pass@host/ into (http://host/, (user, pass))."""
    parts = urlsplit(url)
    auth = None
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        auth = (user, password)
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), auth


def _short(text: object) -> str:
    return str(text)[:MAX_MESSAGE]


class HttpNode:
    """Keep-alive HTTP session to one node; `name` labels errors (e.g. "ETH node")."""

    def __init__(
        self,
        url: str,
        *,
        name: str,
        connect_timeout: float,
        read_timeout: float,
        parse_float: Callable[[str], Any] | None = None,
    ) -> None:
        self.url, self._auth = url_without_credentials(url)
        self.name = name
        self._timeout = (connect_timeout, read_timeout)
        self._parse_float = parse_float
        self._session = requests.Session()
        self._ids = itertools.count(1)

    def post(self, path: str, payload: object, *, what: str) -> Any:
        """POST JSON to url+path and return the decoded JSON answer (HTTP errors with a JSON body included)."""
        url = self.url if not path else self.url.rstrip("/") + "/" + path.lstrip("/")
        try:
            response = self._session.post(
                url,
                data=json.dumps(payload),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
                auth=self._auth,
            )
        except requests.Timeout:
            raise ChainError(f"{self.name}: {what} timed out") from None
        except requests.RequestException as exc:
            raise ChainError(f"{self.name}: {what} failed, node unreachable ({type(exc).__name__})") from None
        try:
            return json.loads(response.content, parse_float=self._parse_float or float)
        except ValueError:
            raise ChainError(f"{self.name}: {what} answered HTTP {response.status_code} without JSON") from None

    def call(self, method: str, params: Sequence[object] = ()) -> Any:
        """Make one JSON-RPC call and return its result.

        :raises RpcError: the node answered an error.
        :raises ChainError: the node is unreachable or answered something malformed.
        """
        answer = self.post(
            "", {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}, what=method
        )
        return self._result(method, answer)

    def batch(self, calls: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """Make several JSON-RPC calls in one HTTP request; results in the order of calls.

        :raises RpcError: any call answered an error.
        :raises ChainError: the node is unreachable or answered something malformed.
        """
        results = self.batch_outcomes(calls)
        for result in results:
            if isinstance(result, RpcError):
                raise result
        return results

    def batch_outcomes(self, calls: Sequence[tuple[str, Sequence[object]]]) -> list[Any]:
        """Make several JSON-RPC calls in one HTTP request; each call's result, or the RpcError it
        answered, in the order of calls (a batch of sends: one refused, the others taken).

        :raises ChainError: the node is unreachable or answered something malformed.
        """
        if not calls:
            return []
        first = next(self._ids)
        body = [
            {"jsonrpc": "2.0", "id": first + i, "method": method, "params": list(params)}
            for i, (method, params) in enumerate(calls)
        ]
        for _ in range(len(calls) - 1):
            next(self._ids)
        answer = self.post("", body, what=f"batch of {calls[0][0]}")
        if not isinstance(answer, list) or len(answer) != len(calls):
            raise ChainError(f"{self.name}: batch of {calls[0][0]} answered a malformed reply")
        by_id = {item.get("id"): item for item in answer if isinstance(item, dict)}
        outcomes: list[Any] = []
        for i, (method, _) in enumerate(calls):
            if first + i not in by_id:
                raise ChainError(f"{self.name}: batch of {calls[0][0]} lost an answer")
            try:
                outcomes.append(self._result(method, by_id[first + i]))
            except RpcError as exc:
                outcomes.append(exc)
        return outcomes

    def _result(self, method: str, answer: object) -> Any:
        if not isinstance(answer, dict) or ("result" not in answer and "error" not in answer):
            raise ChainError(f"{self.name}: {method} answered a malformed reply")
        error = answer.get("error")
        if error:
            code = error.get("code") if isinstance(error, dict) else None
            message = _short(error.get("message", "") if isinstance(error, dict) else error)
            raise RpcError(f"{self.name}: {method} failed: {message}", code=code, node_message=message)
        return answer["result"]


def decimal_float(text: str) -> Decimal:
    """parse_float for json.loads: amounts as exact Decimals."""
    return Decimal(text)
