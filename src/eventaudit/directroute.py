"""Direct routes: an app's hot path (``app.state.direct_routes``, see :class:`DirectRoute`) is
answered by the HTTP protocol itself, without an ASGI scope, task or middleware per request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from eventaudit.accesslog import AccessLog, _access, _log_access, _request_id_of

with contextlib.suppress(ImportError):  # httptools is a dependency; without it no protocol has direct routes
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

if TYPE_CHECKING:
    from eventaudit.httptoolsprotocol import ProblemHttpToolsProtocol

_log = logging.getLogger("eventaudit.httpserver")  # not __name__: its log lines keep their logger name


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
    #: Lower-case names of the header fields :meth:`begin` looks up in ``first``: the protocol notes
    #: them as the fields arrive, so the route need not walk the fields again.
    noted_headers: tuple[bytes, ...]

    def begin(self, headers: RawHeaders, first: Mapping[bytes, bytes]) -> Answer | None:
        """An answer refusing the request on its headers alone, or ``None`` to read the body.

        ``headers`` are all the fields (names lower-case); ``first`` maps each of ``noted_headers``
        that came (and the protocol's own, such as ``x-request-id``) to its first field's value.
        """

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


def noted_headers(routes: Mapping[tuple[bytes, bytes], DirectRoute]) -> tuple[bytes, ...]:
    """The header fields whose first value the protocol notes: ``X-Request-ID``, and what ``routes`` look up."""
    return tuple(sorted({b"x-request-id"}.union(*(route.noted_headers for route in routes.values()))))


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

    __slots__ = (
        "chunks",
        "disconnected",
        "expect_100_continue",
        "first",
        "headers",
        "keep_alive",
        "method",
        "more_body",
        "protocol",
        "reading",
        "response_complete",
        "route",
        "size",
        "started",
        "target",
    )
    message_event = _NobodyWaits()

    def __init__(self, protocol: ProblemHttpToolsProtocol, route: DirectRoute, method: bytes, keep_alive: bool) -> None:
        self.protocol = protocol
        self.route = route
        self.method = method
        self.target: bytes = protocol.url
        self.headers: RawHeaders = protocol.headers
        self.first: Mapping[bytes, bytes] = protocol.first_fields  # this request's own (a new dict per request)
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
            refusal = self.route.begin(self.headers, self.first)
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
        request_id = _request_id_of(self.first.get(b"x-request-id"))
        protocol = self.protocol
        if not self.disconnected:
            protocol.transport.write(
                b"%s%scontent-type: %s\r\ncontent-length: %d\r\n%sx-request-id: %s\r\n%s\r\n%s"
                % (
                    STATUS_LINE[answer.status],
                    _default_head(protocol.server_state.default_headers),
                    answer.content_type,
                    len(answer.body),
                    b"".join([b"%s: %s\r\n" % field for field in answer.headers]) if answer.headers else b"",
                    request_id.encode(),
                    b"" if self.keep_alive else b"connection: close\r\n",
                    answer.body,
                )
            )
            if not self.keep_alive:
                protocol.transport.close()
            protocol.on_response_complete()
        if _access.isEnabledFor(logging.INFO):
            _log_access(
                self.method.decode("ascii"), self.target.decode("latin-1"), answer.status, self.started, request_id
            )


_default_heads: tuple[list[tuple[bytes, bytes]], bytes] = ([], b"")


def _default_head(headers: list[tuple[bytes, bytes]]) -> bytes:
    """uvicorn's default header fields (``date``, ``server``) as they are written, once per list.

    The server replaces the list when the date changes (once a second), so it is joined once a
    second, not once per answer.
    """
    global _default_heads
    joined_for, joined = _default_heads  # one read: servers on two threads may both set it
    if headers is not joined_for:
        joined = b"".join(b"%s: %s\r\n" % (name, value) for name, value in headers)
        _default_heads = (headers, joined)
    return joined
