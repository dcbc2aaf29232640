"""Running an ASGI app with uvicorn, the way both services want it.

* Requests the HTTP parser itself refuses (malformed, headers too large) are answered
  with ``application/problem+json`` like every other 4xx, with the status h11 hints
  (431 for oversized headers). Headers over :data:`MAX_HEADER_BYTES` are refused however
  fast they arrive (h11 only limits what is still incomplete), and so is a request with
  both ``Content-Length`` and ``Transfer-Encoding`` (RFC 9112 §6.3: a smuggling attempt).
* A request must arrive whole (line, headers and body) within ``--request-timeout`` seconds of its
  first byte (:data:`REQUEST_TIMEOUT`), else it is answered 408 and the connection closed; a
  connection idle before or between requests is closed after the keep-alive timeout. The time an
  answer takes once the request is whole is never held against the client.
* One JSON log line per request (method, path, status, elapsed, request id), or a
  readable line when the output is a terminal.
* Direct routes: an app's hot path (``app.state.direct_routes``, see :class:`DirectRoute`) is
  answered by the HTTP protocol itself, without an ASGI scope, task or middleware per request.
* SIGTERM/SIGINT stop accepting, let in-flight requests finish, then run shutdown. Requests
  that would never finish on their own (live tails) are told to end first: an app lists
  callbacks for that in ``app.state.on_stop``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import itertools
import json
import logging
import re
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, MutableMapping
from http import HTTPStatus
from typing import Any, Final, NamedTuple, NoReturn, Protocol, TypeVar

import h11
import uvicorn
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.h11_impl import H11Protocol

from eventaudit import problems

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; h11 still works without it
    httptools = None  # type: ignore[assignment]
    HttpToolsProtocol = H11Protocol  # type: ignore[assignment,misc]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_access = logging.getLogger("eventaudit.access")
_log = logging.getLogger(__name__)
T = TypeVar("T")

_UNECHOED = re.compile(r":? b['\"]")
MAX_HEADER_BYTES = 16 * 1024
"""The most a request line and its headers may take together (16 KiB, h11's own limit)."""
REQUEST_TIMEOUT = 30.0
"""Seconds a request (line, headers and body) may take to arrive, from its first byte; then 408 and close."""
_NEVER: Final = float("inf")


class Config(uvicorn.Config):
    """uvicorn's settings, and ``timeout_request`` (see :data:`REQUEST_TIMEOUT`)."""

    def __init__(self, app: Any, *, timeout_request: float = REQUEST_TIMEOUT, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.timeout_request = timeout_request


def request_timeout_of(config: uvicorn.Config) -> float:
    """The request timeout of ``config``: its own with :class:`Config`, else :data:`REQUEST_TIMEOUT`."""
    return config.timeout_request if isinstance(config, Config) else REQUEST_TIMEOUT


class _Unread:
    """In place of a connection's parser once a request timed out: what arrives after it is not read."""

    @staticmethod
    def feed_data(data: bytes) -> None:
        return None


_UNREAD = _Unread()


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


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools (llhttp) protocol with the same answers as :class:`ProblemH11Protocol`.

    llhttp parses in C, several times faster than h11; it refuses Content-Length with
    Transfer-Encoding itself. The header size limit is counted here, as h11 does it.
    Requests for the app's direct routes are answered here, without ASGI (:class:`DirectRoute`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._direct = direct_routes(self.app) if self.limit_concurrency is None else {}
        self.timeout_request = request_timeout_of(self.config)
        self._idle_since = 0.0  # when the last answer was written (or the connection made)
        self._reading_since: float | None = None  # set from a request's first byte until it is whole
        self._cycle_before: Any = None  # the cycle before the request being read
        self._timer_due = _NEVER  # when timeout_keep_alive_task fires
        self._refusal: bytes | None = None  # the answer to a request refused behind others still being answered
        self._refused_for: tuple[int, str] | None = None  # status and detail of a refusal raised in a parser callback

    # Timeouts: uvicorn arms a keep-alive timer after every answer and cancels it on the next request's
    # first bytes (a TimerHandle and a heap push per request), and has no limit on reading a request.
    # Here one timer lives per connection (timeout_keep_alive_task, due at _timer_due). A request only
    # stores when its reading began, an answer when it was written; when the timer fires it looks at
    # the connection's state: a request being read longer than timeout_request is answered 408, a
    # connection idle (nothing read, the last request answered) longer than timeout_keep_alive is
    # closed, and one that owes answers is left alone (its last answer re-arms the timer).
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = now = self.loop.time()  # a connection that never sends a request is idle too
        self._wake_by(now + self.timeout_keep_alive)

    def _unset_keepalive_if_required(self) -> None:
        """uvicorn calls this on every read: the timer stays, and a request's first byte ends the idle time."""

    def _wake_by(self, deadline: float) -> None:
        if self._timer_due > deadline:
            if self.timeout_keep_alive_task is not None:
                self.timeout_keep_alive_task.cancel()
            self._timer_due = deadline
            self.timeout_keep_alive_task = self.loop.call_at(deadline, self._timer_expired)

    def _timer_expired(self) -> None:
        self.timeout_keep_alive_task = None
        self._timer_due = _NEVER
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._reading_since is not None:
            deadline = self._reading_since + self.timeout_request
            if deadline <= now:
                self._request_timed_out()
                return
        elif self.cycle is None or self.cycle.response_complete:
            deadline = self._idle_since + self.timeout_keep_alive
            if deadline <= now:
                self.transport.close()
                return
        else:
            return  # answers are owed: the time they take is not the client's; the last one re-arms the timer
        self._wake_by(deadline)

    def _idle_from_now(self) -> None:
        self._idle_since = now = self.loop.time()
        self._wake_by(now + self.timeout_keep_alive)

    def on_response_complete(self) -> None:
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self._refusal is not None and self.cycle.response_complete:
            self.transport.write(self._refusal)
            self.transport.close()
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self._idle_since = now = self.loop.time()  # as _idle_from_now, inlined on every answer's path
            if self._timer_due > now + self.timeout_keep_alive:
                self._wake_by(now + self.timeout_keep_alive)

    def on_message_begin(self) -> None:
        now = self.loop.time()
        self._reading_since = now
        self._cycle_before = self.cycle  # until its headers are complete, the request has no cycle of its own
        if self._timer_due > now + self.timeout_request:  # the timer is due later than this request's end, or off
            self._wake_by(now + self.timeout_request)
        # uvicorn's per-request state without its ASGI scope: a direct route needs none (see _asgi_scope).
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self._header_bytes = 0
        self._refused_for = None

    def _asgi_scope(self) -> None:
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect_100_continue
        self.scope["headers"] = headers

    # on_url and on_header run for every request: the count is inlined, not a method call.
    def on_url(self, url: bytes) -> None:
        self._header_bytes += len(url)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large()
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            self._headers_too_large()
        self.headers.append((name.lower(), value))  # as uvicorn's on_header; Expect is looked at once, below

    def on_headers_complete(self) -> None:
        hosts = 0
        expect = False
        codings = None
        for name, value in self.headers:
            if name == b"host":
                hosts += 1
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
            elif name == b"transfer-encoding":
                codings = value if codings is None else codings + b"," + value
        if hosts > 1:
            self._refuse(400, "the request has more than one Host header field (RFC 9112 §3.2)")
        if self.parser.get_http_version() == "1.1":
            if not hosts:
                self._refuse(400, "an HTTP/1.1 request must have a Host header field (RFC 9112 §3.2)")
            self.expect_100_continue = expect  # RFC 9110 §15.2: never a 1xx to an HTTP/1.0 client
        if codings is not None:
            refused = _refused_transfer_codings(codings)
            if refused is not None:
                self._refuse(*refused)
        if self._direct:
            method = self.parser.get_method()
            route = self._direct.get((method, self.url))
            if route is not None and not self.parser.should_upgrade():
                self._begin_direct(route, method)
                return
        self._asgi_scope()
        super().on_headers_complete()

    def _begin_direct(self, route: DirectRoute, method: bytes) -> None:
        parser = self.parser
        keep_alive = parser.get_http_version() != "1.0" and parser.should_keep_alive()
        cycle = _DirectCycle(self, route, method, keep_alive)
        existing, self.cycle = self.cycle, cycle  # type: ignore[assignment]
        if existing is None or existing.response_complete:
            cycle.start()
        else:  # pipelined behind a request still being answered: its turn comes in _start_asgi_task
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if self._refusal is not None and cycle.more_body:  # the request that timed out, pipelined: its turn
            self.transport.write(self._refusal)
            self.transport.close()
            if isinstance(cycle, _DirectCycle):
                cycle.lost()
            return
        if isinstance(cycle, _DirectCycle):
            # Called from the answer before it: the turn is taken on the loop's next pass. Taken at once, a
            # pipeline of requests answered as they start (refusals) nested a call per request in the first
            # answer, until the stack overflowed and the rest of the pipeline was never answered.
            self.loop.call_soon(cycle.take_turn)
        else:
            if cycle.waiting_for_100_continue:
                app = _closing_when_answered_before_the_body(cycle, app)
            super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        if isinstance(self.cycle, _DirectCycle):
            self.cycle.feed(body)
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._reading_since = None
        cycle = self.cycle
        if isinstance(cycle, _DirectCycle):
            cycle.complete()
        else:
            if cycle is not None and cycle.response_complete:
                self._idle_from_now()  # answered before its body was read: nothing is owed
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(self.cycle, _DirectCycle):
            self.cycle.lost()
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self._timer_due = _NEVER
        super().connection_lost(exc)

    def _request_timed_out(self) -> None:
        """The request being read was not whole ``timeout_request`` seconds after its first byte: 408, then close.

        Its ASGI task, waiting for the body, sees ``http.disconnect``; a direct route counts it as broken off.
        Answers still owed to the requests before it come first (RFC 9112 §9.3.2), and nothing more is read.
        """
        self._reading_since = None
        self.parser = _UNREAD  # type: ignore[assignment]
        _log.warning("a request was not complete %g s after its first byte: answered 408", self.timeout_request)
        refusal = _request_timeout_answer(self.timeout_request)
        cycle = self.cycle
        if cycle is self._cycle_before:  # its headers are not complete: it has no cycle yet
            if cycle is not None and not cycle.response_complete:
                self._refusal = refusal  # written after the answer to ``cycle`` (on_response_complete)
                return
            self.transport.write(refusal)
            self.transport.close()
            return
        if self.pipeline and self.pipeline[0][0] is cycle:
            self._refusal = refusal  # written in its turn, after the answers before it (_start_asgi_task)
            return
        answered = cycle.response_complete or getattr(cycle, "response_started", False)
        if isinstance(cycle, _DirectCycle):
            cycle.lost()
        else:
            cycle.disconnected = True
            cycle.message_event.set()
        if not answered:
            self.transport.write(refusal)
        self.transport.close()

    def _headers_too_large(self) -> None:
        self._refuse(
            431, f"the request line and headers are larger than this server accepts ({MAX_HEADER_BYTES} bytes)"
        )

    def _refuse(self, status: int, detail: str) -> NoReturn:
        """Stop parsing: the request is answered ``status`` with ``detail`` and the connection closed."""
        self._refused_for = (status, detail)
        raise ValueError(detail)  # llhttp stops; uvicorn's data_received calls send_400_response

    def send_400_response(self, msg: str) -> None:
        status, detail = self._refused_for or (400, _MALFORMED)
        refusal = _problem_response(status, detail)
        self._reading_since = None  # refused: no longer read, so never timed out
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            # The requests before this one are whole and still being answered: RFC 9112 §9.3.2 keeps the
            # answers in the order of the requests, so the refusal comes after theirs (on_response_complete).
            # Written at once, it took the place of the first answer and the rest were lost.
            self._refusal = refusal
            self.flow.pause_reading()
            return
        self.transport.write(refusal)
        self.transport.close()


def _refused_transfer_codings(field: bytes) -> tuple[int, str] | None:
    """The status and detail refusing a request's Transfer-Encoding (all its fields joined), or ``None`` for chunked."""
    codings = [coding.strip().lower() for coding in field.split(b",")]
    codings = [coding for coding in codings if coding]
    if codings == [b"chunked"]:
        return None
    shown = ", ".join(coding.decode("latin-1") for coding in codings)
    if not codings or codings[-1] != b"chunked":
        # RFC 9112 §6.3: without chunked last, the body's length cannot be known: a 400, then close.
        # (llhttp itself refuses anything after chunked, or chunked twice, before the headers are complete.)
        return 400, f"Transfer-Encoding {shown!r} does not end with chunked: the body's length cannot be known"
    # RFC 9112 §6.1: a transfer coding the server does not understand is a 501.
    return 501, f"Transfer-Encoding {shown!r} is not implemented: send the body with chunked alone or Content-Length"


_MALFORMED = "the HTTP request could not be parsed: malformed request line, headers or body framing"


def _closing_when_answered_before_the_body(cycle: Any, app: ASGIApp) -> ASGIApp:
    """``app`` for uvicorn's ``cycle`` of a request with ``Expect: 100-continue``: an answer started before
    the 100 was sent (no ``receive`` yet) and before the body was read says ``Connection: close`` and closes.

    RFC 9110 §10.1.1, RFC 9112 §9.6: the client may never send the body it was told to wait with, and
    its next request must not be read as that body.
    """

    async def run(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and cycle.waiting_for_100_continue and cycle.more_body:
                cycle.keep_alive = False
            await send(message)

        await app(scope, receive, send_closing)

    return run


def _problem_response(status: int, detail: str) -> bytes:
    """A complete HTTP/1.1 problem+json answer for a request the parser refused, closing the connection."""
    body = problems.document(status, detail)  # UTF-8: the length is counted in bytes
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: {problems.MEDIA_TYPE}\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def protocol() -> type[H11Protocol] | type[HttpToolsProtocol]:
    """The fastest HTTP/1.1 protocol installed: httptools when it is, else h11."""
    return ProblemHttpToolsProtocol if httptools is not None else ProblemH11Protocol


class Answer(NamedTuple):
    """A direct route's complete answer; ``headers`` are lower-case names and values, besides the ones given here."""

    status: int
    content_type: bytes
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


RawHeaders = list[tuple[bytes, bytes]]


class DirectRoute(Protocol):
    """A hot path the HTTP protocol answers itself: no ASGI scope, task or middleware per request.

    An app lists its direct routes in ``app.state.direct_routes``, keyed by method and request
    target as sent (``{(b"POST", b"/"): route}``); any other request, the same path with a query
    string included, goes to the app as usual, so the app must answer those paths too. The
    protocol reads the body (never more than ``max_body`` bytes), then writes the answer with an
    ``X-Request-ID`` and logs it as :class:`AccessLog` does. Only the httptools protocol has them.
    """

    max_body: int

    def begin(self, headers: RawHeaders) -> Answer | None:
        """An answer refusing the request on its headers alone (names lower-case), or ``None`` to read the body."""

    def too_large(self, size: int) -> Answer:
        """The answer once the body is over ``max_body`` (``size`` bytes so far); the rest is not kept."""

    def broken_off(self) -> None:
        """The connection closed before the body was complete; nobody is waiting for an answer."""

    def handle(self, headers: RawHeaders, body: bytes, reply: Callable[[Answer], None]) -> None:
        """Answer the request by calling ``reply`` once, now or later, on the event loop's thread."""


def direct_routes(app: Any) -> dict[tuple[bytes, bytes], DirectRoute]:
    """The ``state.direct_routes`` of ``app``, seen through :class:`AccessLog` and uvicorn's proxy headers.

    Behind any other ASGI middleware there are none: what a wrapper wants to see (a test's fault
    injection, say) goes through ASGI.
    """
    while isinstance(app, (AccessLog, ProxyHeadersMiddleware)):
        app = app.app
    return dict(getattr(getattr(app, "state", None), "direct_routes", None) or {})


_INTERNAL_ERROR = Answer(
    500,
    b"application/problem+json",
    json.dumps(
        {
            "type": "urn:eventaudit:problem:internal",
            "title": "Internal Server Error",
            "status": 500,
            "detail": "the server failed to answer this request; it has been logged",
        }
    ).encode(),
)


class _NobodyWaits:
    def set(self) -> None:
        """uvicorn wakes a cycle's reader on a lost connection; a direct cycle has none."""


class _DirectCycle:
    """One request of a direct route, where uvicorn keeps its ``RequestResponseCycle`` (same flags)."""

    message_event = _NobodyWaits()

    def __init__(self, protocol: ProblemHttpToolsProtocol, route: DirectRoute, method: bytes, keep_alive: bool) -> None:
        self.protocol = protocol
        self.route = route
        self.method = method
        self.target: bytes = protocol.url
        self.headers: RawHeaders = protocol.headers
        self.expect_100_continue = protocol.expect_100_continue  # the protocol's is the latest request's by its turn
        self.keep_alive = keep_alive
        self.started = time.perf_counter()
        self.response_complete = False
        self.disconnected = False
        self.reading = False  # its turn came and its headers were let in: the body is wanted
        self.more_body = True
        self.chunks: list[bytes] = []
        self.size = 0

    def start(self) -> None:
        """Its turn (at once, or once the pipelined requests before it were answered)."""
        try:
            refusal = self.route.begin(self.headers)
        except Exception:
            _log.exception("a direct route failed")
            refusal = _INTERNAL_ERROR
        if refusal is not None:
            self.reply(refusal)
            return
        if self.expect_100_continue and not self.protocol.transport.is_closing():
            self.protocol.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.reading = True
        if self.size > self.route.max_body:
            self.reply(self.route.too_large(self.size))
        elif not self.more_body:
            self._handle()

    def take_turn(self) -> None:
        """:meth:`start`, once the answers before it were written, unless the connection is gone since."""
        if not self.disconnected and not self.protocol.transport.is_closing():
            self.start()

    def feed(self, chunk: bytes) -> None:
        if self.response_complete:
            return
        self.size += len(chunk)
        if self.reading and self.size > self.route.max_body:
            self.chunks = []
            self.reply(self.route.too_large(self.size))
        else:
            self.chunks.append(chunk)

    def complete(self) -> None:
        self.more_body = False
        if self.response_complete:
            self.protocol._idle_from_now()  # answered before its body was read: nothing is owed
        elif self.reading:
            self._handle()

    def lost(self) -> None:
        """The connection is gone, or is closed unread: nothing more is read or written for this request."""
        if self.more_body and not self.response_complete and not self.disconnected:
            self.route.broken_off()
        self.disconnected = True

    def _handle(self) -> None:
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.chunks = []
        try:
            self.route.handle(self.headers, body, self.reply)
        except Exception:
            _log.exception("a direct route failed")
            self.reply(_INTERNAL_ERROR)

    def reply(self, answer: Answer) -> None:
        if self.response_complete:
            return
        self.response_complete = True
        if self.more_body and self.expect_100_continue and not self.reading:
            # Refused on its headers, with no 100 sent: the client may never send the body, and its next
            # request must not be read as that body (RFC 9110 §10.1.1, RFC 9112 §9.6). Close after the answer.
            self.keep_alive = False
        request_id = _request_id(self.headers)
        protocol = self.protocol
        if not self.disconnected:
            head = [STATUS_LINE[answer.status]]
            for name, value in protocol.server_state.default_headers:
                head += (name, b": ", value, b"\r\n")
            head += (b"content-type: ", answer.content_type, b"\r\ncontent-length: %d\r\n" % len(answer.body))
            for name, value in answer.headers:
                head += (name, b": ", value, b"\r\n")
            head += (b"x-request-id: ", request_id.encode(), b"\r\n")
            if not self.keep_alive:
                head.append(b"connection: close\r\n")
            head += (b"\r\n", answer.body)
            protocol.transport.write(b"".join(head))
            if not self.keep_alive:
                protocol.transport.close()
            protocol.on_response_complete()
        if _access.isEnabledFor(logging.INFO):
            _log_access(
                self.method.decode("ascii"), self.target.decode("latin-1"), answer.status, self.started, request_id
            )


def _check_request(request: h11.Request) -> None:
    size = (
        len(request.method) + len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers)
    )
    if size > MAX_HEADER_BYTES:
        raise h11.RemoteProtocolError("request headers too large", error_status_hint=431)
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding", error_status_hint=400)


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


def _log_access(method: str, path: str, status: int, started: float, request_id: str) -> None:
    path = _printable(path)
    _access.info(
        "%s %s %d",
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
            "request_id": request_id,
        },
    )


def _printable(path: str) -> str:
    """The path for a log line: a percent-encoded CR or LF (%0A) must not start a line of its own."""
    return path if path.isprintable() else path.encode("unicode_escape").decode("ascii")


def _request_id(headers: Iterable[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"x-request-id" and 0 < len(value) <= 128 and value.isascii():
            text: str = value.decode()
            if text.isprintable():
                return text
    return f"{_ID_PREFIX}{next(_ids):016x}"


_ID_PREFIX = secrets.token_hex(8)
"""Request ids made here: a random prefix per process and a counter, 32 hex digits like a UUID's,
unique without a system call per request (``uuid4`` reads the kernel's random source each time)."""
_ids = itertools.count(1)


class JSONFormatter(logging.Formatter):
    """Log records as one JSON object per line (like the write-up's ``httplog``)."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": f"{_utc_second(int(record.created // 1))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._SKIP})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return _log_encoder.encode(entry)  # as json.dumps(entry, default=str), without an encoder object per line


_log_encoder = json.JSONEncoder(default=str)


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """``seconds`` since the epoch as RFC 3339 UTC without the fraction; a log line's second is often the last one's."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


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


class Server(uvicorn.Server):
    """uvicorn's server, calling ``on_stop`` callbacks as soon as it begins to stop, before it waits for requests."""

    def __init__(self, config: uvicorn.Config, on_stop: Iterable[Callable[[], None]] = ()) -> None:
        super().__init__(config)
        self.on_stop = list(on_stop)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up built (the app, its routes and schemas, the libraries) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it all again,
        # which took milliseconds of every request's latency under load.
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for callback in self.on_stop:
            callback()
        await super().shutdown(sockets)


def stop_callbacks(app: Any) -> list[Callable[[], None]]:
    """The ``state.on_stop`` callbacks of a Starlette/FastAPI app (none for other ASGI apps)."""
    return list(getattr(getattr(app, "state", None), "on_stop", None) or ())


def server(
    app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 30, request_timeout: float = REQUEST_TIMEOUT
) -> Server:
    """A server for ``app`` with our protocol, access log and stop hooks.

    A request must arrive whole within ``request_timeout`` seconds of its first byte (else 408).
    """
    config = Config(
        AccessLog(app),
        timeout_request=request_timeout,
        host=host,
        port=port,
        http=protocol(),
        loop=LOOP,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* are not trusted: the services are not told which proxy to trust
        timeout_graceful_shutdown=graceful_seconds,
    )
    return Server(config, stop_callbacks(app))


#: uvicorn's choice of event loop: uvloop (libuv, in C) where it is installed, as it is on Linux and macOS
#: (a dependency there), asyncio's own elsewhere. With the audit ingest's direct route most of a request's
#: time on the loop thread is the loop's own (reading, writing, dispatching); see docs/benchmarks.md.
LOOP: Final = "auto"


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the event loop :data:`LOOP` picks (for several servers in one loop)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return None
    return uvloop.new_event_loop


def serve(
    app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 30, request_timeout: float = REQUEST_TIMEOUT
) -> None:
    """Run ``app`` until SIGINT/SIGTERM; in-flight requests get ``graceful_seconds`` to finish."""
    server(app, host, port, graceful_seconds=graceful_seconds, request_timeout=request_timeout).run()


async def serve_together(servers: list[Server]) -> bool:
    """Run several servers in one event loop; when one stops (a signal, a failure), all stop.

    Returns whether every server started and stopped cleanly.
    """

    async def run(server: Server) -> bool:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits this way when the app's startup fails
            return exc.code in (0, None)
        return server.started

    tasks = [asyncio.create_task(run(s)) for s in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.should_exit = True
    return all(await asyncio.gather(*tasks))


def wrap_outermost(app: Any, wrap: Callable[[Any], Any]) -> None:
    """Put ASGI middleware ``wrap(inner)`` around ``app``'s whole stack, FastAPI's own middleware included.

    For a hot path (the audit service's ingest, the users service's read by id) that needs none of
    that middleware: the wrapper answers what it can and hands the rest to the full stack.
    """
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: wrap(build())
