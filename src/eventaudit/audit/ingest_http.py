"""``POST /`` (binary, structured, batched CloudEvents) and ``OPTIONS /`` (webhook handshake)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, NamedTuple

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from eventaudit import problems
from eventaudit.audit import auth
from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.service import GroupCommitter, ShuttingDownError, StoreUnavailableError
from eventaudit.audit.settings import AuditSettings
from eventaudit.events import CloudEventError, EventTooLargeError, UnsupportedFormatError
from eventaudit.events.bindings import http as http_binding
from eventaudit.problems import ProblemError

_encoder = msgspec.json.Encoder()
_WEBHOOK = "https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/http-webhook.md#4-abuse-protection"


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
RawHeaders = Iterable[tuple[bytes, bytes]]


class Answer(NamedTuple):
    """What ``POST /`` answers: status, media type, extra headers, body."""

    status: int
    media_type: str
    headers: dict[str, str]
    body: bytes


class IngestEndpoint:
    """``POST /``, independent of the web framework: raw ASGI headers and ``receive`` in, an answer out.

    The same core serves the documented FastAPI route and :class:`FastIngest`, the ASGI
    shortcut that takes ``POST /`` before any routing.
    """

    def __init__(self, settings: AuditSettings, committer: GroupCommitter, metrics: AuditMetrics) -> None:
        self._settings = settings
        self._committer = committer
        self._metrics = metrics

    async def answer(self, raw_headers: RawHeaders, receive: Receive) -> Answer:
        """Read, decode and store one request; every failure becomes its problem document."""
        try:
            return await self._ingest(raw_headers, receive)
        except ProblemError as exc:
            body = problems.document(exc.status, exc.detail, slug=exc.slug, **exc.extra)
            return Answer(exc.status, problems.MEDIA_TYPE, exc.headers, body)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = await self.answer(scope["headers"], receive)
        headers = [(b"content-type", answer.media_type.encode()), (b"content-length", b"%d" % len(answer.body))]
        if answer.headers:
            headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in answer.headers.items()]
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _ingest(self, raw_headers: RawHeaders, receive: Receive) -> Answer:
        settings, metrics = self._settings, self._metrics
        headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw_headers]
        if settings.ingest_token is not None:
            auth.require_header(_header(headers, "authorization"), (settings.ingest_token,), "ingest")
        _refuse_content_coding(_header(headers, "content-encoding"), metrics)
        body = await _read_body(_header(headers, "content-length"), receive, settings.max_body, metrics)
        try:
            decoded = http_binding.decode(headers, body, max_size=settings.max_body)
        except CloudEventError as exc:
            raise _rejected(exc, metrics) from None
        metrics.batch_events.observe(len(decoded.events))
        if not decoded.events:
            return _json({"stored": 0, "duplicates": 0, "seqs": []})
        try:
            outcome = await self._committer.submit(decoded.events)
        except (StoreUnavailableError, ShuttingDownError) as exc:
            metrics.rejected.labels("unavailable").inc()
            raise ProblemError(
                503, f"{exc}; nothing was stored", slug="unavailable", headers={"Retry-After": "1"}
            ) from None
        except CloudEventError as exc:  # the store refused an event the codec let through
            raise _rejected(exc, metrics) from None
        stored = outcome.stored
        return _json({"stored": stored, "duplicates": len(outcome.seqs) - stored, "seqs": outcome.seqs})


class FastIngest:
    """ASGI middleware: ``POST /`` goes straight to :class:`IngestEndpoint`, skipping routing.

    Ingest is the hot path; everything else passes through to the app unchanged.
    """

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], endpoint: IngestEndpoint) -> None:
        self.app = app
        self.endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == "/":
            await self.endpoint(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None


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
    )
    async def ingest(request: Request) -> Response:
        answer = await endpoint.answer(request.scope["headers"], request.receive)
        return Response(answer.body, status_code=answer.status, media_type=answer.media_type, headers=answer.headers)

    @routes.options("/", summary="CloudEvents HTTP webhook abuse-protection handshake")
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


async def _read_body(declared: str | None, receive: Receive, limit: int, metrics: AuditMetrics) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit``."""
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError(400, "Content-Length is not a number", slug="bad-request")
        if int(declared) > limit:
            metrics.rejected.labels("too_large").inc()
            raise _too_large(int(declared), limit)
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


def _json(body: Any) -> Answer:
    return Answer(200, "application/json", {}, _encoder.encode(body))
