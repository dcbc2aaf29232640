"""``POST /`` (binary, structured, batched CloudEvents) and ``OPTIONS /`` (webhook handshake)."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from eventaudit.audit import auth
from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.service import GroupCommitter, ShuttingDownError, StoreUnavailableError
from eventaudit.audit.settings import AuditSettings
from eventaudit.events import CloudEventError, EventTooLargeError, UnsupportedFormatError
from eventaudit.events.bindings import http as http_binding
from eventaudit.problems import ProblemError

_encoder = msgspec.json.Encoder()
_WEBHOOK = "https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/http-webhook.md#4-abuse-protection"


def router(settings: AuditSettings, committer: GroupCommitter, metrics: AuditMetrics) -> APIRouter:
    """The ingest routes."""
    routes = APIRouter(tags=["ingest"])

    @routes.post(
        "/",
        summary="Store CloudEvents (binary, structured or batched content mode)",
        responses={
            200: {"description": "Stored (or already stored: duplicates are counted, not stored again)."},
            400: {"description": "Not a valid CloudEvent; the problem names attribute, rule and batch index."},
            401: {"description": "An ingest token is configured and was missing or wrong."},
            413: {"description": "Body over the size limit."},
            415: {"description": "A CloudEvents format other than JSON, or no CloudEvent at all."},
            503: {"description": "The database is unavailable; retry after Retry-After seconds."},
        },
    )
    async def ingest(request: Request) -> Response:
        if settings.ingest_token is not None:
            auth.require(request, (settings.ingest_token,), "ingest")
        body = await _read_body(request, settings.max_body, metrics)
        try:
            decoded = http_binding.decode(request.headers, body, max_size=settings.max_body)
        except CloudEventError as exc:
            raise _rejected(exc, metrics) from None
        metrics.batch_events.observe(len(decoded.events))
        if not decoded.events:
            return _json({"stored": 0, "duplicates": 0, "seqs": []})
        try:
            outcome = await committer.submit(decoded.events)
        except (StoreUnavailableError, ShuttingDownError) as exc:
            metrics.rejected.labels("unavailable").inc()
            raise ProblemError(
                503, f"{exc}; nothing was stored", slug="unavailable", headers={"Retry-After": "1"}
            ) from None
        return _json({"stored": outcome.stored, "duplicates": outcome.duplicates, "seqs": outcome.seqs})

    @routes.options("/", summary="CloudEvents HTTP webhook abuse-protection handshake")
    async def handshake(request: Request) -> Response:
        origin = request.headers.get("webhook-request-origin")
        headers = {"Allow": "POST, OPTIONS"}
        if origin is None:
            return Response(status_code=204, headers=headers)
        if "*" not in settings.allowed_origins and origin not in settings.allowed_origins:
            raise ProblemError(
                403, f"origin {origin!r} may not deliver here", slug="origin-not-allowed", headers=headers
            )
        headers["WebHook-Allowed-Origin"] = origin
        headers["WebHook-Allowed-Rate"] = "*" if settings.allowed_rate is None else str(settings.allowed_rate)
        return Response(status_code=200, headers=headers)

    return routes


async def _read_body(request: Request, limit: int, metrics: AuditMetrics) -> bytes:
    """The body, refused with 413 as soon as it is known to be over ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ProblemError(400, "Content-Length is not a number", slug="bad-request")
        if int(declared) > limit:
            metrics.rejected.labels("too_large").inc()
            raise _too_large(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            metrics.rejected.labels("too_large").inc()
            raise _too_large(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


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


def _json(body: Any, status: int = 200) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")
