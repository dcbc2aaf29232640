"""The users HTTP API over real HTTP, on SQLite and PostgreSQL: the CRUD contract and bad requests.

Every bad request gets its 4xx as ``application/problem+json`` that names the problem, stores
nothing, and never echoes a value it was sent.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher

from tests.integration.audit.conftest import assert_problem
from tests.integration.users.conftest import JSON, OZZY, SECRET, UsersServer

USER_KEYS = {"id", "name", "created_at", "updated_at"}


def _time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


# --- the contract -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/user", "/v1/users"])
def test_the_write_ups_curl_creates_a_user(shared_users: UsersServer, path: str) -> None:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    response = shared_users.client.post(path, content=OZZY, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == USER_KEYS
    assert body["name"] == "Ozzy Osbourne"
    assert str(uuid.UUID(body["id"])) == body["id"]
    assert body["created_at"] == body["updated_at"]
    _time(body["created_at"])
    assert "12345" not in response.text
    assert response.headers["location"] == f"/v1/users/{body['id']}"
    fetched = shared_users.client.get(response.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == body


def test_get_accepts_the_id_in_capitals(shared_users: UsersServer) -> None:
    user = shared_users.create()
    response = shared_users.client.get(f"/v1/users/{user['id'].upper()}")
    assert response.status_code == 200
    assert response.json() == user


def test_the_password_is_stored_as_argon2id_with_owasp_parameters(shared_users: UsersServer) -> None:
    user = shared_users.create("hash check", SECRET)
    [row] = [r for r in shared_users.user_rows() if r["id"] == user["id"]]
    assert row["password_hash"].startswith("$argon2id$v=19$m=19456,t=2,p=1$"), row["password_hash"]
    assert SECRET not in row["password_hash"]
    assert PasswordHasher().verify(row["password_hash"], SECRET)


def test_list_pages_through_every_user_in_creation_order(shared_users: UsersServer) -> None:
    made = [shared_users.create(f"pager {n}")["id"] for n in range(7)]
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 3}
    pages = 0
    while True:
        response = shared_users.client.get("/v1/users", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        assert len(body["items"]) <= 3
        seen.extend(body["items"])
        pages += 1
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    ids = [item["id"] for item in seen]
    assert len(ids) == len(set(ids))
    assert [i for i in ids if i in made] == made
    assert all(set(item) == USER_KEYS for item in seen)
    keys = [(item["created_at"], item["id"]) for item in seen]
    assert keys == sorted(keys)
    assert pages >= 3


def test_a_cursor_goes_on_after_users_are_added(shared_users: UsersServer) -> None:
    shared_users.create("before the cursor")
    everything = shared_users.client.get("/v1/users", params={"limit": 1000}).json()["items"]
    first = shared_users.client.get("/v1/users", params={"limit": len(everything)}).json()
    assert first["next_cursor"] is not None
    late = shared_users.create("after the cursor")
    rest = shared_users.client.get("/v1/users", params={"cursor": first["next_cursor"]}).json()
    assert [item["id"] for item in rest["items"]] == [late["id"]]
    assert rest["next_cursor"] is None


def test_patch_changes_the_name(shared_users: UsersServer) -> None:
    user = shared_users.create("Ozzy")
    changed = shared_users.patch(user["id"], name="John Michael Osbourne")
    assert changed["name"] == "John Michael Osbourne"
    assert changed["id"] == user["id"]
    assert changed["created_at"] == user["created_at"]
    assert _time(changed["updated_at"]) > _time(user["updated_at"])
    assert shared_users.client.get(f"/v1/users/{user['id']}").json() == changed


def test_patch_changes_the_password(shared_users: UsersServer) -> None:
    user = shared_users.create("rotating", "old-password")
    changed = shared_users.patch(user["id"], password=SECRET)
    assert set(changed) == USER_KEYS
    assert changed["name"] == "rotating"
    [row] = [r for r in shared_users.user_rows() if r["id"] == user["id"]]
    assert PasswordHasher().verify(row["password_hash"], SECRET)


def test_patch_with_nothing_to_change_changes_nothing(shared_users: UsersServer) -> None:
    user = shared_users.create("steady")
    assert shared_users.patch(user["id"]) == user
    assert shared_users.patch(user["id"], name="steady") == user


def test_delete_then_the_user_is_gone(shared_users: UsersServer) -> None:
    user = shared_users.create("leaving")
    response = shared_users.client.delete(f"/v1/users/{user['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(shared_users.client.get(f"/v1/users/{user['id']}"), 404, "user-not-found")
    assert_problem(shared_users.client.delete(f"/v1/users/{user['id']}"), 404, "user-not-found")
    assert_problem(shared_users.client.patch(f"/v1/users/{user['id']}", json={"name": "x"}), 404, "user-not-found")
    assert user["id"] not in {row["id"] for row in shared_users.user_rows()}


def test_operations_routes(shared_users: UsersServer) -> None:
    assert shared_users.client.get("/healthz").json() == {"status": "ok"}
    assert shared_users.client.get("/readyz").json() == {"status": "ready"}
    spec = shared_users.client.get("/openapi.json").json()
    assert {"/v1/users", "/v1/user", "/v1/users/{user_id}"} <= set(spec["paths"])
    assert {"post", "get"} <= set(spec["paths"]["/v1/users"])
    assert {"get", "patch", "delete"} <= set(spec["paths"]["/v1/users/{user_id}"])
    text = shared_users.client.get("/metrics").text
    for name in (
        "eventaudit_outbox_backlog_events",
        "eventaudit_outbox_lag_seconds",
        "eventaudit_outbox_parked_events",
    ):
        assert f"\n{name} " in text, name


def test_metrics_count_the_backlog(shared_users: UsersServer) -> None:
    before = shared_users.metric("eventaudit_outbox_backlog_events")
    shared_users.create("backlog")
    assert shared_users.metric("eventaudit_outbox_backlog_events") == before + 1
    assert shared_users.metric("eventaudit_outbox_lag_seconds") > 0


# --- bad requests -------------------------------------------------------------------------------

NOT_A_USER = "00000000-0000-4000-8000-000000000000"


def _post(body: bytes, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {"method": "POST", "url": "/v1/users", "content": body, "headers": JSON if headers is None else headers}


def _json_post(value: Any) -> dict[str, Any]:
    return _post(json.dumps(value).encode())


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# name -> (request, status, slug, the fields a 422 must name)
BAD: dict[str, tuple[dict[str, Any], int, str | None, set[str]]] = {
    "truncated JSON": (_post(b'{"name": "a",'), 400, "malformed-json", set()),
    "unquoted member name": (_post(b'{name: "a", "password": "b"}'), 400, "malformed-json", set()),
    "garbage after the object": (_post(b'{"name": "a", "password": "b"} x'), 400, "malformed-json", set()),
    "empty body": (_post(b""), 400, "malformed-json", set()),
    "not UTF-8": (_post(b'{"name": "\xff\xfe", "password": "b"}'), 400, "malformed-json", set()),
    "NaN": (_post(b'{"name": NaN, "password": "b"}'), 400, "malformed-json", set()),
    "repeated member": (_post(b'{"name": "a", "name": "b", "password": "c"}'), 400, "malformed-json", set()),
    "byte order mark": (_post(b'\xef\xbb\xbf{"name": "a", "password": "b"}'), 400, "malformed-json", set()),
    "nested too deep": (_post(b"[" * 20000 + b"]" * 20000), 400, "malformed-json", set()),
    "text/plain": (_post(OZZY, {"content-type": "text/plain"}), 415, "unsupported-media-type", set()),
    "no content type": (_post(OZZY, {}), 415, "unsupported-media-type", set()),
    "a form (curl without -H)": (
        _post(OZZY, {"content-type": "application/x-www-form-urlencoded"}),
        415,
        "unsupported-media-type",
        set(),
    ),
    "latin-1 JSON": (_post(OZZY, {"content-type": "application/json; charset=latin-1"}), 415, None, set()),
    "gzip": (_post(OZZY, {**JSON, "content-encoding": "gzip"}), 415, "unsupported-media-type", set()),
    "XML": (_post(b"<user/>", {"content-type": "application/xml"}), 415, "unsupported-media-type", set()),
    "declared too large": (_post(b"{" + b" " * 70_000 + b"}"), 413, "too-large", set()),
    "an array": (_json_post([{"name": "a", "password": "b"}]), 422, "invalid-fields", {"(body)"}),
    "a string": (_json_post("Ozzy"), 422, "invalid-fields", {"(body)"}),
    "null": (_json_post(None), 422, "invalid-fields", {"(body)"}),
    "empty object": (_json_post({}), 422, "invalid-fields", {"name", "password"}),
    "empty name": (_json_post({"name": "", "password": SECRET}), 422, "invalid-fields", {"name"}),
    "blank name": (_json_post({"name": "   ", "password": SECRET}), 422, "invalid-fields", {"name"}),
    "over-long name": (_json_post({"name": "x" * 201, "password": SECRET}), 422, "invalid-fields", {"name"}),
    "line break in name": (_json_post({"name": "a\nb", "password": SECRET}), 422, "invalid-fields", {"name"}),
    "unpaired surrogate in name": (
        _post(b'{"name": "\\ud800", "password": "b"}'),
        422,
        "invalid-fields",
        {"name"},
    ),
    "number as name": (_json_post({"name": 42, "password": SECRET}), 422, "invalid-fields", {"name"}),
    "null name": (_json_post({"name": None, "password": SECRET}), 422, "invalid-fields", {"name"}),
    "missing name": (_json_post({"password": SECRET}), 422, "invalid-fields", {"name"}),
    "empty password": (_json_post({"name": "a", "password": ""}), 422, "invalid-fields", {"password"}),
    "number as password": (_json_post({"name": "a", "password": 12345}), 422, "invalid-fields", {"password"}),
    "null password": (_json_post({"name": "a", "password": None}), 422, "invalid-fields", {"password"}),
    "array as password": (_json_post({"name": "a", "password": [SECRET]}), 422, "invalid-fields", {"password"}),
    "missing password": (_json_post({"name": "a"}), 422, "invalid-fields", {"password"}),
    "over-long password": (_json_post({"name": "a", "password": "p" * 1025}), 422, "invalid-fields", {"password"}),
    "unpaired surrogate in password": (
        _post(b'{"name": "a", "password": "\\udfff"}'),
        422,
        "invalid-fields",
        {"password"},
    ),
    "unknown field": (
        _json_post({"name": "a", "password": "b", "email": SECRET}),
        422,
        "invalid-fields",
        {"email"},
    ),
    "read-only id": (_json_post({"id": NOT_A_USER, "name": "a", "password": "b"}), 422, "invalid-fields", {"id"}),
    "everything wrong at once": (
        _json_post({"name": "", "password": 5, "passwd": SECRET}),
        422,
        "invalid-fields",
        {"name", "password", "passwd"},
    ),
    "list: limit 0": ({"method": "GET", "url": "/v1/users?limit=0"}, 400, "invalid-parameter", set()),
    "list: limit not a number": ({"method": "GET", "url": "/v1/users?limit=ten"}, 400, "invalid-parameter", set()),
    "list: limit too large": ({"method": "GET", "url": "/v1/users?limit=1001"}, 400, "invalid-parameter", set()),
    "list: cursor not base64": ({"method": "GET", "url": "/v1/users?cursor=%%%"}, 400, "invalid-parameter", set()),
    "list: cursor of another shape": (
        {"method": "GET", "url": f"/v1/users?cursor={_cursor({'after': 1})}"},
        400,
        "invalid-parameter",
        set(),
    ),
    "list: cursor with a bad id": (
        {"method": "GET", "url": f"/v1/users?cursor={_cursor([1, 'x'])}"},
        400,
        "invalid-parameter",
        set(),
    ),
    "get: malformed id": ({"method": "GET", "url": "/v1/users/not-a-uuid"}, 404, "user-not-found", set()),
    "get: braced id": ({"method": "GET", "url": f"/v1/users/{{{NOT_A_USER}}}"}, 404, "user-not-found", set()),
    "get: unknown id": ({"method": "GET", "url": f"/v1/users/{NOT_A_USER}"}, 404, "user-not-found", set()),
    "patch: unknown id": (
        {"method": "PATCH", "url": f"/v1/users/{NOT_A_USER}", "json": {"name": "a"}},
        404,
        "user-not-found",
        set(),
    ),
    "delete: unknown id": ({"method": "DELETE", "url": f"/v1/users/{NOT_A_USER}"}, 404, "user-not-found", set()),
    "delete: malformed id": ({"method": "DELETE", "url": "/v1/users/1%20OR%201=1"}, 404, "user-not-found", set()),
    "put is not allowed": ({"method": "PUT", "url": f"/v1/users/{NOT_A_USER}", "json": {}}, 405, None, set()),
    "delete of the collection": ({"method": "DELETE", "url": "/v1/users"}, 405, None, set()),
    "no such route": ({"method": "GET", "url": "/v1/people"}, 404, None, set()),
}

# PATCH on a user that exists: the same rules, with nothing required.
BAD_PATCH: dict[str, tuple[dict[str, Any], int, str | None, set[str]]] = {
    "patch: truncated JSON": ({"content": b'{"name": ', "headers": JSON}, 400, "malformed-json", set()),
    "patch: text/plain": ({"content": b'{"name": "a"}', "headers": {"content-type": "text/plain"}}, 415, None, set()),
    "patch: empty name": ({"json": {"name": ""}}, 422, "invalid-fields", {"name"}),
    "patch: empty password": ({"json": {"password": ""}}, 422, "invalid-fields", {"password"}),
    "patch: read-only created_at": ({"json": {"created_at": "2020-01-01T00:00:00Z"}}, 422, None, {"created_at"}),
    "patch: not an object": ({"json": ["name"]}, 422, "invalid-fields", {"(body)"}),
    "patch: too large": ({"content": b'{"name": "' + b"x" * 70_000 + b'"}', "headers": JSON}, 413, None, set()),
}


def _check_bad(response: httpx.Response, status: int, slug: str | None, fields: set[str]) -> None:
    body = assert_problem(response, status, slug)
    assert SECRET not in response.text
    if status == 422:
        assert {error["field"] for error in body["errors"]} == fields, body
        for error in body["errors"]:
            assert error["field"] in body["detail"]
            assert error["rule"]


@pytest.mark.parametrize("name", BAD)
def test_bad_request(shared_users: UsersServer, name: str) -> None:
    request, status, slug, fields = BAD[name]
    users_before, events_before = len(shared_users.user_rows()), len(shared_users.outbox_rows())
    response = shared_users.client.request(**request)
    _check_bad(response, status, slug, fields)
    assert len(shared_users.user_rows()) == users_before
    assert len(shared_users.outbox_rows()) == events_before


@pytest.mark.parametrize("name", BAD_PATCH)
def test_bad_patch(shared_users: UsersServer, name: str) -> None:
    user = shared_users.create("patch target")
    events_before = len(shared_users.outbox_rows())
    request, status, slug, fields = BAD_PATCH[name]
    response = shared_users.client.request("PATCH", f"/v1/users/{user['id']}", **request)
    _check_bad(response, status, slug, fields)
    assert shared_users.client.get(f"/v1/users/{user['id']}").json() == user
    assert len(shared_users.outbox_rows()) == events_before


def test_a_body_streamed_past_the_limit_is_refused(shared_users: UsersServer) -> None:
    def chunks() -> Any:
        yield b'{"name": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'", "password": "b"}'

    response = shared_users.client.post("/v1/users", content=chunks(), headers=JSON)
    _check_bad(response, 413, "too-large", set())


def test_the_service_is_still_healthy_after_the_bad_requests(shared_users: UsersServer) -> None:
    assert shared_users.client.get("/readyz").status_code == 200
    shared_users.create("still here")
