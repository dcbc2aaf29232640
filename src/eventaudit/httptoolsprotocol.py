"""uvicorn's httptools protocol as both services run it, and :func:`protocol`, the choice of protocol."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, NoReturn

from uvicorn.protocols.http.h11_impl import H11Protocol

from eventaudit.accesslog import ASGIApp, Message, Receive, Scope, Send
from eventaudit.directroute import DirectRoute, _DirectCycle, direct_routes, noted_headers
from eventaudit.httpheaders import header_pairs
from eventaudit.httplimits import MAX_HEADER_BYTES
from eventaudit.httpprotocol import (
    ProblemH11Protocol,
    _problem_response,
    _request_timeout_answer,
    request_timeout_of,
)

try:
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is a dependency; h11 still works without it
    httptools = None  # type: ignore[assignment]
    HttpToolsProtocol = H11Protocol  # type: ignore[assignment,misc]

_log = logging.getLogger("eventaudit.httpserver")  # not __name__: its log lines keep their logger name

_NEVER: Final = float("inf")


class _Unread:
    """In place of a connection's parser once a request timed out: what arrives after it is not read."""

    @staticmethod
    def feed_data(data: bytes) -> None:
        return None


_UNREAD = _Unread()


class ProblemHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools (llhttp) protocol with the same answers as :class:`ProblemH11Protocol`.

    llhttp parses in C, several times faster than h11; it refuses Content-Length with
    Transfer-Encoding itself. The header size limit is counted here, as h11 does it.
    Requests for the app's direct routes are answered here, without ASGI (:class:`DirectRoute`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # httptools takes on_header when the parser is made (in super().__init__): the per-request
        # head counter and field list, in C when built (httpheaders.header_pairs), not a method. It
        # notes the first value of the fields the direct routes look up, and of X-Request-ID.
        config = kwargs["config"] if "config" in kwargs else args[0]
        if not config.loaded:  # as uvicorn's own __init__ would, below: the app as it will be served
            config.load()
        direct = direct_routes(config.loaded_app) if config.limit_concurrency is None else {}
        self._head = header_pairs(MAX_HEADER_BYTES, self._headers_too_large, noted_headers(direct))
        self.on_header = self._head  # type: ignore[method-assign,assignment]  # an instance attribute, not a method
        super().__init__(*args, **kwargs)
        self._direct = direct
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
        self.headers = self._head.reset()
        self._refused_for = None

    @property
    def first_fields(self) -> Mapping[bytes, bytes]:
        """The first value of each noted header field of the request being read (:class:`HeaderPairs`'s ``first``)."""
        return self._head.first

    def _asgi_scope(self) -> None:
        url, headers, expect_100_continue = self.url, self.headers, self.expect_100_continue
        super().on_message_begin()
        self.url, self.headers, self.expect_100_continue = url, headers, expect_100_continue
        self.scope["headers"] = headers

    # The target and the header fields count against MAX_HEADER_BYTES together; on_header is self._head
    # (see __init__), which keeps each field as uvicorn's on_header does and notes Host, Expect and
    # Transfer-Encoding on the way, for on_headers_complete.
    def on_url(self, url: bytes) -> None:
        self._head.count(len(url))
        self.url += url

    def on_headers_complete(self) -> None:
        head = self._head  # what it noted of Host, Expect and Transfer-Encoding while the fields came
        if head.hosts > 1:
            self._refuse(400, "the request has more than one Host header field (RFC 9112 §3.2)")
        version = self.parser.get_http_version()  # read once: httptools formats it anew each call (~1 µs)
        if version == "1.1":
            if not head.hosts:
                self._refuse(400, "an HTTP/1.1 request must have a Host header field (RFC 9112 §3.2)")
            self.expect_100_continue = head.expect_continue  # RFC 9110 §15.2: never a 1xx to an HTTP/1.0 client
        if head.transfer_codings is not None:
            refused = _refused_transfer_codings(head.transfer_codings)
            if refused is not None:
                self._refuse(*refused)
        if self._direct:
            method = self.parser.get_method()
            route = self._direct.get((method, self.url))
            if route is not None and not self.parser.should_upgrade():
                self._begin_direct(route, method, version)
                return
        self._asgi_scope()
        super().on_headers_complete()

    def _begin_direct(self, route: DirectRoute, method: bytes, version: str) -> None:
        keep_alive = version != "1.0" and self.parser.should_keep_alive()
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
        # uvicorn calls this from its `except httptools.HttpParserError` block: the error is llhttp's own.
        status, detail = self._refused_for or (400, _malformed(sys.exc_info()[1]))
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
_REASON = re.compile(r"[A-Za-z][A-Za-z0-9 ,.:'`()/-]{0,119}")


def _malformed(exc: BaseException | None) -> str:
    """The detail of a 400 for a request llhttp refused, naming llhttp's reason ("Invalid header value char").

    llhttp's reasons are fixed phrases of its own, never bytes of the request; anything else (a callback's
    error, a reason of another shape) gets the generic detail.
    """
    if type(exc) in _LLHTTP_ERRORS and _REASON.fullmatch(reason := str(exc).strip()):
        return f"the HTTP request could not be parsed: {reason}"
    return _MALFORMED


_LLHTTP_ERRORS: frozenset[type] = frozenset()
if httptools is not None:  # the parser's own errors; HttpParserCallbackError wraps an exception of a callback
    _LLHTTP_ERRORS = frozenset(
        {
            httptools.HttpParserError,
            httptools.HttpParserInvalidMethodError,
            httptools.HttpParserInvalidStatusError,
            httptools.HttpParserInvalidURLError,
        }
    )


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


def protocol() -> type[H11Protocol] | type[HttpToolsProtocol]:
    """The fastest HTTP/1.1 protocol installed: httptools when it is, else h11."""
    return ProblemHttpToolsProtocol if httptools is not None else ProblemH11Protocol
