"""The users HTTP API: ``/v1/users`` (and the write-up's ``POST /v1/user``), health and metrics.

Request bodies are read and checked here rather than by a framework model, so each failure gets
its own status: 413 too large, 415 not JSON, 400 malformed JSON, 422 naming every bad field.
A password is never echoed, logged or returned; a field's value is never put in an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from eventaudit import operations
from eventaudit.events import types
from eventaudit.problems import ProblemError
from eventaudit.users import passwords, repository
from eventaudit.users.errors import InvalidFieldsError, UserNotFoundError
from eventaudit.users.metrics import UsersMetrics
from eventaudit.users.relay import set_backlog_metrics
from eventaudit.users.service import CREATED, DELETED, UPDATED, Trace, UnitOfWork, User, UserService, now_micros
from eventaudit.users.settings import UsersSettings

_encoder = msgspec.json.Encoder()
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[ -~]*)?")
_MAX_TRACESTATE = 512
MAX_PAGE = 1000
"""The most users one page of ``GET /v1/users`` holds."""
_READ_ONLY = frozenset({"id", "created_at", "updated_at"})
_JSON_KINDS = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


class UserOut(BaseModel):
    """A user: never its password."""

    id: str
    name: str
    created_at: str
    updated_at: str


class UserPage(BaseModel):
    """One page of users; ``next_cursor`` fetches the next one (``null`` at the end)."""

    items: list[UserOut]
    next_cursor: str | None


def _body_schema(required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": required,
                        "properties": {
                            "name": {"type": "string", "minLength": 1, "maxLength": 200},
                            "password": {"type": "string", "minLength": 1, "writeOnly": True},
                        },
                    }
                }
            },
        }
    }


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not well-formed JSON, or a query parameter is invalid."},
    413: {"description": "The body is over the size limit."},
    415: {"description": "The body is not application/json."},
    422: {"description": "Fields are missing, unknown or invalid; `errors` names each."},
    503: {"description": "The database is unavailable; nothing was changed."},
}


def router(
    settings: UsersSettings,
    uow: UnitOfWork,
    service: UserService,
    metrics: UsersMetrics,
    on_change: Callable[[], None] = lambda: None,
) -> APIRouter:
    """The routes of the users service; ``on_change`` is called after each committed change."""
    users = APIRouter(prefix="/v1", tags=["users"])
    fields = _Fields(settings)

    async def create(request: Request) -> Response:
        body = await _json_body(request, settings.max_body)
        name, password = fields.check(body, required=True)
        assert name is not None
        assert password is not None
        password_hash = await _hash(password, metrics)
        user = await run_in_threadpool(
            uow.write, partial(service.create, name=name, password_hash=password_hash, trace=trace_of(request))
        )
        _changed(metrics, CREATED, on_change)
        return _json(user.resource(), 201, headers={"Location": f"/v1/users/{user.id}"})

    users.add_api_route(
        "/users",
        create,
        methods=["POST"],
        status_code=201,
        summary="Create a user",
        response_model=None,
        responses={201: {"model": UserOut, "description": "Created; `Location` names it."}, **_ERRORS},
        openapi_extra=_body_schema(["name", "password"]),
    )
    users.add_api_route(
        "/user",
        create,
        methods=["POST"],
        status_code=201,
        summary="Create a user (the original write-up's route)",
        response_model=None,
        responses={201: {"model": UserOut, "description": "Created; `Location` names it."}, **_ERRORS},
        openapi_extra=_body_schema(["name", "password"]),
    )

    @users.get("/users", summary="List users in creation order, a page at a time", response_model=UserPage)
    async def list_users(
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        after = _decode_cursor(cursor) if cursor else None
        page = await run_in_threadpool(uow.read, partial(service.page, after=after, limit=limit))
        next_cursor = _encode_cursor(page[-1]) if len(page) == limit else None
        return _json({"items": [user.resource() for user in page], "next_cursor": next_cursor})

    @users.get(
        "/users/{user_id}",
        summary="Get a user",
        response_model=UserOut,
        responses={404: {"description": "No such user."}},
    )
    async def get_user(user_id: str) -> Response:
        found = await run_in_threadpool(uow.read, partial(service.get, user_id=_user_id(user_id)))
        return _json(found.resource())

    @users.patch(
        "/users/{user_id}",
        summary="Change a user's name, password or both",
        response_model=UserOut,
        responses={404: {"description": "No such user."}, **_ERRORS},
        openapi_extra=_body_schema([]),
    )
    async def update_user(user_id: str, request: Request) -> Response:
        key = _user_id(user_id)
        body = await _json_body(request, settings.max_body)
        name, password = fields.check(body, required=False)
        password_hash = None if password is None else await _hash(password, metrics)
        user, changed = await run_in_threadpool(
            uow.write,
            partial(service.update, user_id=key, name=name, password_hash=password_hash, trace=trace_of(request)),
        )
        if changed:
            _changed(metrics, UPDATED, on_change)
        return _json(user.resource())

    @users.delete(
        "/users/{user_id}",
        summary="Delete a user",
        status_code=204,
        response_class=Response,
        responses={404: {"description": "No such user."}},
    )
    async def delete_user(user_id: str, request: Request) -> Response:
        key = _user_id(user_id)
        await run_in_threadpool(uow.write, partial(service.delete, user_id=key, trace=trace_of(request)))
        _changed(metrics, DELETED, on_change)
        return Response(status_code=204)

    async def refresh_backlog() -> None:
        try:
            backlog = await run_in_threadpool(uow.read, repository.backlog)
        except ProblemError:
            return  # the database is away: serve the rest, the gauges keep their last values
        set_backlog_metrics(metrics, backlog, now_micros())

    ops = operations.router(
        uow.ping,
        metrics.registry,
        refresh=refresh_backlog,
        metrics_summary="Prometheus metrics, with the outbox backlog, lag and parked count",
    )

    routes = APIRouter()
    routes.include_router(users)
    routes.include_router(ops)
    return routes


def _changed(metrics: UsersMetrics, type_: str, on_change: Callable[[], None]) -> None:
    metrics.changes.labels(type_).inc()
    on_change()


async def _hash(password: str, metrics: UsersMetrics) -> str:
    started = time.perf_counter()
    hashed = await passwords.hash_password(password)
    metrics.hash_seconds.observe(time.perf_counter() - started)
    return hashed


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json", headers=headers)


def _user_id(text: str) -> str:
    """The canonical (lower-case) form of a user id; anything that is not a UUID is no user (404)."""
    if not _UUID.fullmatch(text):
        raise UserNotFoundError(text)
    return text.lower()


# --- trace context ------------------------------------------------------------------------------


def trace_of(request: Request) -> Trace:
    """The request's W3C trace context; an invalid ``traceparent`` is ignored (W3C Trace Context §4.3)."""
    parents = request.headers.getlist("traceparent")
    if len(parents) != 1:
        return Trace()
    parent = parents[0].strip()
    match = _TRACEPARENT.fullmatch(parent)
    if match is None:
        return Trace()
    version, trace_id, parent_id, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest) or set(trace_id) == {"0"} or set(parent_id) == {"0"}:
        return Trace()
    state = ",".join(value.strip() for value in request.headers.getlist("tracestate")).strip(", ")
    if not state or len(state) > _MAX_TRACESTATE or not (state.isascii() and state.isprintable()):
        return Trace(parent)
    return Trace(parent, state)


# --- cursors ------------------------------------------------------------------------------------


def _encode_cursor(user: User) -> str:
    return base64.urlsafe_b64encode(_encoder.encode([user.created_at, user.id])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        created_at, user_id = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if type(created_at) is not int or not 0 <= created_at < 2**63 or type(user_id) is not str:
            raise ValueError
        if not _UUID.fullmatch(user_id):
            raise ValueError
    except (ValueError, TypeError, binascii.Error, msgspec.MsgspecError):
        raise ProblemError(400, "cursor is not one this service gave out", slug="invalid-parameter") from None
    return created_at, user_id


# --- request bodies -----------------------------------------------------------------------------


async def _json_body(request: Request, limit: int) -> Any:
    """The decoded JSON body: 413 over ``limit``, 415 when not JSON, 400 when malformed."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise _too_large(int(declared), limit)
    _require_json(request)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(size, limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise ProblemError(400, "the request body ended before it was complete", slug="malformed-json") from None
    return _parse(b"".join(chunks))


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    media = None if content_type is None else types.parse_media_type(content_type.strip())
    coding = request.headers.get("content-encoding", "identity").strip().lower()
    if media is None or not media.is_json or not media.essence.startswith("application/"):
        shown = "no Content-Type" if content_type is None else f"Content-Type {content_type[:100]!r}"
        raise ProblemError(
            415,
            f"the body must be application/json, not {shown}",
            slug="unsupported-media-type",
            headers={"Accept": "application/json"},
        )
    if media.charset not in (None, "utf-8"):
        raise ProblemError(415, "the body must be UTF-8 encoded JSON", slug="unsupported-media-type")
    if coding not in ("", "identity"):
        raise ProblemError(
            415,
            f"Content-Encoding {coding[:50]!r} is not supported; send the body as it is",
            slug="unsupported-media-type",
            headers={"Accept-Encoding": "identity"},
        )


def _too_large(size: int, limit: int) -> ProblemError:
    return ProblemError(
        413, f"the body is over the limit of {limit} bytes (at least {size})", slug="too-large", limit=limit
    )


class _DuplicateMemberError(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _DuplicateMemberError
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ProblemError(400, "the body is not valid UTF-8", slug="malformed-json") from None
    except _DuplicateMemberError:
        raise ProblemError(400, "the body repeats a member name in one object", slug="malformed-json") from None
    except json.JSONDecodeError as exc:
        raise ProblemError(
            400,
            f"the body is not well-formed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            slug="malformed-json",
        ) from None
    except (ValueError, RecursionError):
        raise ProblemError(400, "the body is not well-formed JSON", slug="malformed-json") from None


class _Fields:
    """The rules for ``name`` and ``password``, collecting every failure before answering 422."""

    def __init__(self, settings: UsersSettings) -> None:
        self.max_name = settings.max_name_length
        self.max_password = settings.max_password_length

    def check(self, body: Any, *, required: bool) -> tuple[str | None, str | None]:
        if type(body) is not dict:
            raise InvalidFieldsError([{"field": "(body)", "rule": f"must be a JSON object, not {_kind(body)}"}])
        errors: list[dict[str, Any]] = []
        for key in body:
            if key not in ("name", "password"):
                rule = "is read-only" if key in _READ_ONLY else "is not a field of a user (name, password)"
                errors.append({"field": _shown(key), "rule": rule})
        name = self._name(body, required, errors)
        password = self._password(body, required, errors)
        if errors:
            raise InvalidFieldsError(errors)
        return name, password

    def _name(self, body: dict[str, Any], required: bool, errors: list[dict[str, Any]]) -> str | None:
        if "name" not in body:
            if required:
                errors.append({"field": "name", "rule": "is required"})
            return None
        name = body["name"]
        rule = None
        if type(name) is not str:
            rule = f"must be a string, not {_kind(name)}"
        elif not name.strip():
            rule = "must not be empty or only spaces"
        elif len(name) > self.max_name:
            rule = f"must be at most {self.max_name} characters long, not {len(name)}"
        elif not types.is_string(name):
            rule = "must not hold control characters, noncharacters or unpaired surrogates"
        if rule is not None:
            errors.append({"field": "name", "rule": rule})
            return None
        return str(name)

    def _password(self, body: dict[str, Any], required: bool, errors: list[dict[str, Any]]) -> str | None:
        if "password" not in body:
            if required:
                errors.append({"field": "password", "rule": "is required"})
            return None
        password = body["password"]
        rule = None
        if type(password) is not str:
            rule = f"must be a string, not {_kind(password)}"
        elif not password:
            rule = "must not be empty"
        elif len(password) > self.max_password:
            rule = f"must be at most {self.max_password} characters long"
        elif any("\ud800" <= char <= "\udfff" for char in password):
            rule = "must be valid Unicode (it holds an unpaired surrogate)"
        if rule is not None:
            errors.append({"field": "password", "rule": rule})
            return None
        return str(password)


def _kind(value: object) -> str:
    return "null" if value is None else _JSON_KINDS.get(type(value), type(value).__name__)


def _shown(key: str) -> str:
    """A member name as an error may show it: at most 64 characters, control characters escaped."""
    shown = key[:64] + ("…" if len(key) > 64 else "")
    return shown if shown.isprintable() else shown.encode("unicode_escape").decode("ascii")
