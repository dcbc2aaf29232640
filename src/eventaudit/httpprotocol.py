"""The HTTP/1.1 protocols uvicorn runs for both services: what they share, and the h11 one.

* Requests the HTTP parser itself refuses (malformed, headers too large) are answered
  with ``application/problem+json`` like every other 4xx, with the status h11 hints
  (431 for oversized headers). Headers over :data:`~eventaudit.httplimits.MAX_HEADER_BYTES` are refused however
  fast they arrive (h11 only limits what is still incomplete), and so is a request with
  both ``Content-Length`` and ``Transfer-Encoding`` (RFC 9112 §6.3: a smuggling attempt).
* A request must arrive whole (line, headers and body) within ``--request-timeout`` seconds of its
  first byte (:data:`~eventaudit.httplimits.REQUEST_TIMEOUT`), else it is answered 408 and the connection closed; a
  connection idle before or between requests is closed after the keep-alive timeout. The time an
  answer takes once the request is whole is never held against the client.

The httptools protocol, and the choice between the two, are in :mod:`eventaudit.httptoolsprotocol`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from http import HTTPStatus
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from eventaudit import problems
from eventaudit.httplimits import MAX_HEADER_BYTES, REQUEST_TIMEOUT

_log = logging.getLogger("eventaudit.httpserver")  # not __name__: its log lines keep their logger name

_UNECHOED = re.compile(r":? b['\"]")


class Config(uvicorn.Config):
    """uvicorn's settings, and ``timeout_request`` (see :data:`REQUEST_TIMEOUT`)."""

    def __init__(self, app: Any, *, timeout_request: float = REQUEST_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.timeout_request = timeout_request


def request_timeout_of(config: uvicorn.Config) -> float:
    """The request timeout of ``config``: its own with :class:`Config`, else :data:`REQUEST_TIMEOUT`."""
    return config.timeout_request if isinstance(config, Config) else REQUEST_TIMEOUT


class ProblemH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering unparsable requests with problem+json, and slow ones with 408.

    It reads one request at a time (h11 parses the next only once the answer before it is written),
    so a request timer runs only while a request is partly read; a connection that never sends a
    request is closed after the keep-alive timeout, as between requests.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._status_hint = 400
        self._reason = ""
        self.timeout_request = request_timeout_of(self.config)
        self._reading_since: float | None = None
        self._request_timer: asyncio.TimerHandle | None = None
        parse = self.conn.next_event

        def next_event() -> Any:
            try:
                event = parse()
                if isinstance(event, h11.Request):
                    _check_request(event)
                elif isinstance(event, h11.EndOfMessage):
                    self._reading_since = None
                return event
            except h11.RemoteProtocolError as exc:
                self._status_hint = exc.error_status_hint
                self._reason = _UNECHOED.split(str(exc), maxsplit=1)[0]  # never echo the bytes: a token may be in them
                raise

        self.conn.next_event = next_event  # type: ignore[method-assign]

    def send_400_response(self, msg: str) -> None:
        status = self._status_hint if 400 <= self._status_hint < 500 else 400
        detail = (
            f"the request line and headers are larger than this server accepts ({MAX_HEADER_BYTES} bytes)"
            if status == 431
            else f"the HTTP request could not be parsed: {self._reason or 'malformed'}"
        )
        body = json.dumps(
            {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status, "detail": detail}
        ).encode()
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
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

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def handle_events(self) -> None:
        super().handle_events()
        if self._reading_since is None and self._reading() and not self.transport.is_closing():
            self._reading_since = self.loop.time()
            if self._request_timer is None:
                self._request_timer = self.loop.call_later(self.timeout_request, self._request_timer_expired)

    def _reading(self) -> bool:
        """Whether a request is partly read: its body is, or the start of its headers is buffered."""
        their_state = self.conn.their_state
        return their_state is h11.SEND_BODY or (their_state is h11.IDLE and bool(self.conn.trailing_data[0]))

    def _request_timer_expired(self) -> None:
        self._request_timer = None
        if self._reading_since is None or self.transport.is_closing():
            return
        remaining = self._reading_since + self.timeout_request - self.loop.time()
        if remaining > 0:  # a later request than the one the timer was started for
            self._request_timer = self.loop.call_later(remaining, self._request_timer_expired)
            return
        self._reading_since = None
        _log.warning("a request was not complete %g s after its first byte: answered 408", self.timeout_request)
        cycle = self.cycle
        answered = False
        if cycle is not None and self.conn.their_state is h11.SEND_BODY:  # the cycle is this request's
            answered = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
        if not answered:
            self.transport.write(_request_timeout_answer(self.timeout_request))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None
        super().connection_lost(exc)


def _request_timeout_answer(seconds: float) -> bytes:
    return _problem_response(408, f"the request was not complete within {seconds:g} seconds of its first byte")


def _check_request(request: h11.Request) -> None:
    size = (
        len(request.method) + len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers)
    )
    if size > MAX_HEADER_BYTES:
        raise h11.RemoteProtocolError("request headers too large", error_status_hint=431)
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding", error_status_hint=400)


def _problem_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 problem+json answer for a request the parser refused, closing the connection."""
    body = problems.document(status, detail)  # UTF-8: the length is counted in bytes
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {problems.MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body
