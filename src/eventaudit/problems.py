"""RFC 9457 problem details: one error type per service maps to ``application/problem+json``.

Each service raises :class:`ProblemError` (or a subclass) with its HTTP status; one
handler per app turns it, and every error the framework raises itself (unknown
route, wrong method, bad parameters), into a problem document. An unexpected
exception becomes a bare 500 problem that reveals nothing of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from eventaudit.httplimits import MAX_HEADER_BYTES

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
    _document(app)


_PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `errors`, where present, names each failure.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "urn:eventaudit:problem:<slug>, or about:blank"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}

_INVALID_PARAMETER = "A parameter is invalid; `errors` names each (`parameter`, `rule`)."
_HEAD_TOO_LARGE = f"The request line and header fields are over {MAX_HEADER_BYTES} bytes (RFC 6585 §5)."
_FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"


def _document(app: FastAPI) -> None:
    """Make ``app``'s OpenAPI document say what :func:`install` and the HTTP protocol answer.

    FastAPI documents its parameter validation as a 422 with its own error shape; here it is a 400
    problem. Any request whose head is too large (a long query string, say) is refused with a 431
    before it reaches a route. Every error answer of the document gets the problem document as its content.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problems_documented(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _problems_documented(schema: dict[str, Any]) -> dict[str, Any]:
    content = {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation.get("responses", {})
            if _is_fastapi_validation(responses.get("422")):
                del responses["422"]
                responses.setdefault("400", {"description": _INVALID_PARAMETER})
            responses.setdefault("431", {"description": _HEAD_TOO_LARGE})
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = content
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = _PROBLEM_SCHEMA
    if f'"{_FASTAPI_VALIDATION}"' not in json.dumps(schema["paths"]):  # nothing refers to FastAPI's error shapes
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
    return schema


def _is_fastapi_validation(response: dict[str, Any] | None) -> bool:
    """Whether ``response`` is the 422 FastAPI documents for its own parameter validation."""
    schema = (response or {}).get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == _FASTAPI_VALIDATION)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    routes = request.app.router.routes
    return [m for m in _METHODS if any(r.matches({**request.scope, "method": m})[0] is Match.FULL for r in routes)]


def _parameter_error(error: Mapping[str, Any]) -> dict[str, str]:
    location: Sequence[Any] = error.get("loc", ())
    name = ".".join(str(part) for part in location[1:]) or str(location[0] if location else "request")
    return {"parameter": name, "rule": str(error.get("msg", "invalid"))}
