"""Running an ASGI app with uvicorn, the way both services want it.

* Requests the HTTP parser itself refuses (malformed, headers too large) are answered
  with ``application/problem+json`` like every other 4xx, with the status h11 hints
  (431 for oversized headers).
* One JSON log line per request (method, path, status, elapsed, request id), or a
  readable line when the output is a terminal.
* SIGTERM/SIGINT stop accepting, let in-flight requests finish, then run shutdown.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_access = logging.getLogger("eventaudit.access")


class ProblemH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering unparsable requests with problem+json."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status_hint = 400
        parse = self.conn.next_event

        def next_event() -> Any:
            try:
                return parse()
            except h11.RemoteProtocolError as exc:
                self._status_hint = exc.error_status_hint
                raise

        self.conn.next_event = next_event  # type: ignore[method-assign]

    def send_400_response(self, msg: str) -> None:
        status = self._status_hint if 400 <= self._status_hint < 500 else 400
        detail = (
            "the request headers are larger than this server accepts"
            if status == 431
            else "the HTTP request could not be parsed"
        )
        body = json.dumps(
            {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
        ).encode()
        headers = [(b"content-type", b"application/problem+json"), (b"connection", b"close")]
        for event in (
            h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase.encode()),
            h11.Data(data=body),
            h11.EndOfMessage(),
        ):
            try:
                self.transport.write(self.conn.send(event))
            except h11.LocalProtocolError:
                break
        self.transport.close()


class AccessLog:
    """ASGI middleware: one log line per request, and an ``X-Request-ID`` on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            _access.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
                    "request_id": request_id,
                },
            )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and 0 < len(value) <= 128 and value.isascii():
            text: str = value.decode()
            if text.isprintable():
                return text
    return uuid.uuid4().hex


class JSONFormatter(logging.Formatter):
    """Log records as one JSON object per line (like the write-up's ``httplog``)."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._SKIP})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "info", json_lines: bool | None = None) -> None:
    """Log to stderr: JSON lines, or readable text when stderr is a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def serve(app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 30) -> None:
    """Run ``app`` until SIGINT/SIGTERM; in-flight requests get ``graceful_seconds`` to finish."""
    config = uvicorn.Config(
        AccessLog(app),
        host=host,
        port=port,
        http=ProblemH11Protocol,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=graceful_seconds,
    )
    uvicorn.Server(config).run()
