"""The access log: one JSON log line per request (method, path, status, elapsed, request id), or a
readable line when the output is a terminal.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_access = logging.getLogger("eventaudit.access")


class AccessLog:
    """ASGI middleware: one log line per request, and an ``X-Request-ID`` on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope.get("headers", ()))
        id_header = (b"x-request-id", request_id.encode())
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if _access.isEnabledFor(logging.INFO):  # the line costs more than many a request: only when kept
                _log_access(scope["method"], scope["path"], status, started, request_id)


#: Writes one access line (its message and fields) itself, without a LogRecord, or returns False to
#: leave it to ``logging`` (see :func:`eventaudit.httpserver.configure_logging`); ``None``: every line
#: goes through ``logging``.
direct_writer: Callable[[str, dict[str, Any]], bool] | None = None


def _log_access(method: str, path: str, status: int, started: float, request_id: str) -> None:
    path = _printable(path)
    fields = {
        "method": method,
        "path": path,
        "status": status,
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
        "request_id": request_id,
    }
    if direct_writer is not None and direct_writer(f"{method} {path} {status}", fields):
        return
    _access.info("%s %s %d", method, path, status, extra=fields)


def _printable(path: str) -> str:
    """The path for a log line: a percent-encoded CR or LF (%0A) must not start a line of its own."""
    return path if path.isprintable() else path.encode("unicode_escape").decode("ascii")


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The request's id: its first ``X-Request-ID`` field (names lower-case) or a new one (:func:`_request_id_of`)."""
    for name, value in headers:
        if name == b"x-request-id":
            return _request_id_of(value)
    return _request_id_of(None)


def _request_id_of(sent: bytes | None) -> str:
    """The id a client sent, when it is 1-128 printable ASCII characters; else a new one."""
    if sent is not None and 0 < len(sent) <= 128 and sent.isascii():
        text: str = sent.decode()
        if text.isprintable():
            return text
    return f"{_ID_PREFIX}{next(_ids):016x}"


_ID_PREFIX = secrets.token_hex(8)
"""Request ids made here: a random prefix per process and a counter, 32 hex digits like a UUID's,
unique without a system call per request (``uuid4`` reads the kernel's random source each time)."""
_ids = itertools.count(1)
