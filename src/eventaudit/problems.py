"""RFC 9457 problem details: one error type per service maps to ``application/problem+json``.

Each service raises :class:`ProblemError` (or a subclass) with its HTTP status; one
handler per app turns it, and every error the framework raises itself (unknown
route, wrong method, bad parameters), into a problem document. An unexpected
exception becomes a bare 500 problem that reveals nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

MEDIA_TYPE = "application/problem+json"
_encoder = msgspec.json.Encoder()


class ProblemError(Exception):
    """An error a client sees as a problem document with ``status``.

    ``slug`` names the problem type (``urn:eventaudit:problem:<slug>``); ``extra``
    adds members, such as ``errors`` listing each failure.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An ``application/problem+json`` response."""
    body = document(status, detail, slug=slug, **extra)
    return Response(body, status_code=status, media_type=MEDIA_TYPE, headers=dict(headers or {}))


def document(status: int, detail: str, *, slug: str | None = None, **extra: Any) -> bytes:
    """The JSON bytes of a problem document (RFC 9457)."""
    body: dict[str, Any] = {
        "type": f"urn:eventaudit:problem:{slug}" if slug else "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return _encoder.encode(body)


def install(app: FastAPI) -> None:
    """Make every error of ``app`` a problem document."""

    async def on_problem(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ProblemError)
        return problem_response(exc.status, exc.detail, slug=exc.slug, headers=exc.headers, **exc.extra)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).description
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # RFC 9110 §15.5.6: every method of the path, not only the first route's
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return problem_response(exc.status_code, detail, headers=headers)

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [_parameter_error(error) for error in exc.errors()]
        detail = "; ".join(f"{e['parameter']}: {e['rule']}" for e in errors)
        return problem_response(400, detail, slug="invalid-parameter", errors=errors)

    async def on_unexpected(_request: Request, _exc: Exception) -> Response:
        # Starlette logs the exception with its traceback; the client learns nothing of the internals.
        return problem_response(500, "the server failed to answer this request; it has been logged", slug="internal")

    app.add_exception_handler(ProblemError, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_unexpected)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    routes = request.app.router.routes
    return [m for m in _METHODS if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)]


def _parameter_error(error: Mapping[str, Any]) -> dict[str, str]:
    location: Sequence[Any] = error.get("loc", ())
    name = ".".join(str(part) for part in location[1:]) or str(location[0] if location else "request")
    return {"parameter": name, "rule": str(error.get("msg", "invalid"))}
