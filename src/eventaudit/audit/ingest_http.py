"""``POST /`` (binary, structured, batched CloudEvents) and ``OPTIONS /`` (webhook handshake)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from eventaudit import problems
from eventaudit.audit import auth
from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.service import GroupCommitter, ShuttingDownError, Stored, StoreUnavailableError
from eventaudit.audit.settings import AuditSettings
from eventaudit.directroute import Answer
from eventaudit.events import CloudEvent, CloudEventError, EventTooLargeError, UnsupportedFormatError
from eventaudit.events.bindings import http as http_binding
from eventaudit.events.formats import json as json_format
from eventaudit.problems import ProblemError

_encoder = msgspec.json.Encoder()
_WEBHOOK = "https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/http-webhook.md#4-abuse-protection"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
RawHeaders = Iterable[tuple[bytes, bytes]]
#: The header fields ``POST /`` may refuse a request on before its body (:meth:`IngestEndpoint.check`).
#: The first field of each name counts.
CHECKED_HEADERS: tuple[bytes, ...] = (b"authorization", b"content-encoding", b"content-length")


class IngestEndpoint:
    """``POST /``, independent of the web framework: raw ASGI headers and the body in, an answer out.

    The same core serves the HTTP protocol's direct route (:class:`DirectIngest`, no ASGI), the
    ASGI shortcut :class:`FastIngest` and the documented FastAPI route.
    """

    def __init__(self, settings: AuditSettings, committer: GroupCommitter, metrics: AuditMetrics) -> None:
        self._settings = settings
        self._committer = committer
        self._metrics = metrics
        self.max_body = settings.max_body

    async def answer(self, raw_headers: RawHeaders, receive: Receive) -> Answer:
        """Read, decode and store one request; every failure becomes its problem document."""
        try:
            self.check(raw_headers)
            events = self.decode(raw_headers, await _read_body(receive, self.max_body, self._metrics))
            if not events:
                return _NOTHING_STORED
            try:
                outcome = await self._committer.submit(events)
            except Exception as exc:
                raise self.failed(exc) from None
            return _stored(outcome)
        except ProblemError as exc:
            return problem_answer(exc)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self.answer(scope["headers"], receive)
        headers = [(b"content-type", answer.content_type), (b"content-length", b"%d" % len(answer.body))]
        headers += answer.headers
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    def check(self, raw_headers: RawHeaders) -> None:
        """Refuse on the headers alone: the ingest token, a content coding, a declared length over the limit.

        Raises:
            ProblemError: 400, 401, 413 or 415.
        """
        first: dict[bytes, bytes] = {}
        for name, value in raw_headers:
            if name in CHECKED_HEADERS:
                first.setdefault(name, value)
        self.check_first(first)

    def check_first(self, first: Mapping[bytes, bytes]) -> None:
        """:meth:`check` given the first value of each of :data:`CHECKED_HEADERS` that came.

        Raises:
            ProblemError: 400, 401, 413 or 415.
        """
        authorization = first.get(b"authorization")
        coding = first.get(b"content-encoding")
        declared = first.get(b"content-length")
        if self._settings.ingest_token is not None:
            presented = None if authorization is None else authorization.decode("latin-1")
            auth.require_header(presented, (self._settings.ingest_token,), "ingest")
        if coding is not None:
            _refuse_content_coding(coding.decode("latin-1"), self._metrics)
        if declared is not None:
            _check_declared_length(declared, self.max_body, self._metrics)

    def decode(self, raw_headers: RawHeaders, body: bytes) -> list[CloudEvent]:
        """The events of a request (none for an empty batch).

        Raises:
            ProblemError: 400, 413 or 415, naming each failure.
        """
        headers = http_binding.text_headers(raw_headers)
        try:
            events = http_binding.decode(headers, body, max_size=self.max_body).events
        except CloudEventError as exc:
            raise _rejected(exc, self._metrics) from None
        self._metrics.batch_events.observe(len(events))
        return events

    def too_large(self, size: int) -> ProblemError:
        self._metrics.rejected.labels("too_large").inc()
        return _too_large(size, self.max_body)

    def broken_off(self) -> None:
        self._metrics.rejected.labels("incomplete").inc()

    def failed(self, exc: BaseException) -> ProblemError:
        """The problem for a submission that failed with ``exc``.

        What is no known refusal is a failure of ours (the writer logged it with its traceback): a bare
        500 problem, the same on every path. Raised instead, the direct route's answer was never written.
        """
        if isinstance(exc, (StoreUnavailableError, ShuttingDownError)):
            self._metrics.rejected.labels("unavailable").inc()
            return ProblemError(503, f"{exc}; nothing was stored", slug="unavailable", headers={"Retry-After": "1"})
        if isinstance(exc, CloudEventError):  # the store refused an event the codec let through
            return _rejected(exc, self._metrics)
        return ProblemError(500, "the server failed to answer this request; it has been logged", slug="internal")

    @property
    def committer(self) -> GroupCommitter:
        return self._committer


class DirectIngest:
    """``POST /`` as the HTTP protocol's direct route (:class:`directroute.DirectRoute`): no ASGI per request.

    The protocol hands over the headers and the body; the answer is written from the commit's
    callback on the event loop, without a task or a future.
    """

    noted_headers = CHECKED_HEADERS

    def __init__(self, endpoint: IngestEndpoint) -> None:
        self._endpoint = endpoint
        self._submit = endpoint.committer.submit_nowait
        self.max_body = endpoint.max_body

    def begin(self, headers: RawHeaders, first: Mapping[bytes, bytes]) -> Answer | None:
        try:
            self._endpoint.check_first(first)
        except ProblemError as exc:
            return problem_answer(exc)
        return None

    def too_large(self, size: int) -> Answer:
        return problem_answer(self._endpoint.too_large(size))

    def broken_off(self) -> None:
        self._endpoint.broken_off()

    def handle(self, headers: RawHeaders, body: bytes, reply: Callable[[Answer], None]) -> None:
        endpoint = self._endpoint
        try:
            events = endpoint.decode(headers, body)
            if not events:
                reply(_NOTHING_STORED)
                return

            def done(outcome: Stored | BaseException) -> None:
                if isinstance(outcome, Stored):
                    reply(_stored(outcome))
                else:
                    reply(problem_answer(endpoint.failed(outcome)))

            self._submit(events, "http", done)
        except ProblemError as exc:
            reply(problem_answer(exc))
        except ShuttingDownError as exc:
            reply(problem_answer(endpoint.failed(exc)))


class FastIngest:
    """ASGI middleware: ``POST /`` goes straight to :class:`IngestEndpoint`, skipping routing.

    For servers without the direct route (the h11 protocol, in-process ASGI clients); everything
    else passes through to the app unchanged.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], endpoint: IngestEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def router(settings: AuditSettings, endpoint: IngestEndpoint) -> APIRouter:
    """The ingest routes (``POST /`` is normally answered by :class:`FastIngest` first, with the same core)."""
    routes = APIRouter(tags=["ingest"])
    allowed_origins = {origin.lower() for origin in settings.allowed_origins}  # DNS names: any case

    @routes.post(
        "/",
        summary="Store CloudEvents (binary, structured or batched content mode)",
        responses={
            200: {"description": "Stored (or already stored: duplicates are counted, not stored again)."},
            400: {"description": "Not a valid CloudEvent; the problem names attribute, rule and batch index."},
            401: {"description": "An ingest token is configured and was missing or wrong."},
            413: {"description": "Body over the size limit."},
            415: {"description": "A CloudEvents format other than JSON, no CloudEvent at all, or a Content-Encoding."},
            503: {"description": "The database is unavailable; retry after Retry-After seconds."},
        },
        openapi_extra={"requestBody": _INGEST_BODY, "parameters": _BINARY_MODE_HEADERS},
    )
    async def ingest(request: Request) -> Response:
        answer = await endpoint.answer(request.scope["headers"], request.receive)
        response = Response(answer.body, status_code=answer.status, media_type=answer.content_type.decode())
        response.raw_headers += answer.headers
        return response

    @routes.options(
        "/",
        summary="CloudEvents HTTP webhook abuse-protection handshake",
        response_class=Response,
        responses={
            200: {"description": "The origin may deliver: `WebHook-Allowed-Origin` and `WebHook-Allowed-Rate`."},
            204: {"description": "No `WebHook-Request-Origin`: only `Allow`."},
            400: {"description": "`WebHook-Request-Origin` is empty."},
            403: {"description": "The origin may not deliver here (`--allowed-origin`)."},
        },
    )
    async def handshake(request: Request) -> Response:
        origin = request.headers.get("webhook-request-origin")
        headers = {"Allow": "POST, OPTIONS"}
        if origin is None:
            return Response(status_code=204, headers=headers)
        origin = origin.strip()
        if not origin:
            raise ProblemError(400, "WebHook-Request-Origin must name the sender", slug="bad-request", headers=headers)
        if "*" not in allowed_origins and origin.lower() not in allowed_origins:
            raise ProblemError(
                403, f"origin {origin!r} may not deliver here", slug="origin-not-allowed", headers=headers
            )
        headers["WebHook-Allowed-Origin"] = origin
        headers["WebHook-Allowed-Rate"] = "*" if settings.allowed_rate is None else str(settings.allowed_rate)
        return Response(status_code=200, headers=headers)

    return routes


#: ``POST /``'s body in the OpenAPI document, one entry per content mode (bindings/http-protocol-binding.md §3).
_INGEST_BODY: dict[str, Any] = {
    "required": False,
    "description": (
        f"Structured mode: one event as `{json_format.CONTENT_TYPE}`. Batched mode: an array of them as "
        f"`{json_format.BATCH_CONTENT_TYPE}`. Binary mode: the event's data as any other media type, its "
        f"attributes in `{http_binding.PREFIX}` header fields (below)."
    ),
    "content": {
        json_format.CONTENT_TYPE: {"schema": json_format.SCHEMA},
        json_format.BATCH_CONTENT_TYPE: {"schema": {"type": "array", "items": json_format.SCHEMA}},
        "application/json": {"schema": {}, "description": "Binary mode: the data, with `ce-` header fields."},
    },
}


#: Binary mode's attributes as header fields (§3.1.3); optional here, as the other modes carry them in the body.
_BINARY_MODE_HEADERS: list[dict[str, Any]] = [
    {
        "name": f"{http_binding.PREFIX}{attribute}",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": f"Binary mode: the event's `{attribute}`{note}",
    }
    for attribute, note in (
        ("specversion", " (1.0)"),
        ("id", ""),
        ("source", ", a URI-reference"),
        ("type", ""),
        ("subject", ""),
        ("time", ", RFC 3339"),
    )
]


def _refuse_content_coding(coding: str | None, metrics: AuditMetrics) -> None:
    """RFC 9110 §15.5.16: a content coding the server does not apply is a 415."""
    coding = (coding or "identity").strip().lower()
    if coding not in ("", "identity"):
        metrics.rejected.labels("unsupported_media_type").inc()
        raise ProblemError(
            415,
            f"Content-Encoding {coding!r} is not supported; send the body as it is",
            slug="unsupported-media-type",
            headers={"Accept-Encoding": "identity"},
        )


def _check_declared_length(declared: bytes, limit: int, metrics: AuditMetrics) -> None:
    if not declared.isdigit():
        raise ProblemError(400, "Content-Length is not a number", slug="bad-request")
    if int(declared) > limit:
        metrics.rejected.labels("too_large").inc()
        raise _too_large(int(declared), limit)


async def _read_body(receive: Receive, limit: int, metrics: AuditMetrics) -> bytes:
    """The body, refused with 413 as soon as it is over ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the body broke off, or its framing was malformed
            metrics.rejected.labels("incomplete").inc()
            raise ProblemError(400, "the request body ended before it was complete", slug="bad-request")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            metrics.rejected.labels("too_large").inc()
            raise _too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, limit: int) -> ProblemError:
    return ProblemError(
        413, f"the body is over the limit of {limit} bytes (at least {size})", slug="too-large", limit=limit
    )


def _rejected(exc: CloudEventError, metrics: AuditMetrics) -> ProblemError:
    errors = [
        {"attribute": f.attribute, "rule": f.rule, "section": f.section, "index": f.batch_index} for f in exc.failures
    ]
    if isinstance(exc, EventTooLargeError):
        metrics.rejected.labels("too_large").inc()
        return ProblemError(413, str(exc), slug="too-large", errors=errors)
    if isinstance(exc, UnsupportedFormatError):
        metrics.rejected.labels("unsupported_media_type").inc()
        return ProblemError(415, str(exc), slug="unsupported-media-type", errors=errors)
    metrics.rejected.labels("invalid_event").inc()
    return ProblemError(400, str(exc), slug="invalid-event", errors=errors)


def problem_answer(exc: ProblemError) -> Answer:
    body = problems.document(exc.status, exc.detail, slug=exc.slug, **exc.extra)
    headers = tuple((name.lower().encode(), value.encode("latin-1")) for name, value in exc.headers.items())
    return Answer(exc.status, _PROBLEM, body, headers)


def _stored(outcome: Stored) -> Answer:
    seqs = outcome.seqs
    if len(seqs) == 1 and seqs[0] is not None:  # the common answer, as the encoder writes it
        return Answer(200, _JSON, b'{"stored":1,"duplicates":0,"seqs":[%d]}' % seqs[0])
    stored = outcome.stored
    return Answer(200, _JSON, _encoder.encode({"stored": stored, "duplicates": len(seqs) - stored, "seqs": seqs}))


_JSON = b"application/json"
_PROBLEM = problems.MEDIA_TYPE.encode()
_NOTHING_STORED = Answer(200, _JSON, b'{"stored":0,"duplicates":0,"seqs":[]}')
