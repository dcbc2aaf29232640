"""``GET /v1/users/{id}`` taken before routing (users/fast_read.py) answers as the FastAPI route does.

The same running service is asked twice for each case: through the whole app (where
:class:`FastRead` answers found users) and through the app's own middleware stack without it
(FastAPI's routing), and the answers must agree. SQLite (read on the loop) and PostgreSQL (in a thread).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from eventaudit.users.app import create_app
from eventaudit.users.fast_read import FastRead
from eventaudit.users.settings import UsersSettings
from tests.integration.servers import serve_in_thread
from tests.integration.users.conftest import unused_sink


@pytest.fixture
def both(users_db: str) -> Iterator[tuple[httpx.Client, Route]]:
    """A client of the running app, and one of its router alone (the same database, after startup)."""
    app = create_app(UsersSettings(db=users_db, relay=False, sink=unused_sink()))
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        assert client.get("/healthz").status_code == 200  # the app has built its middleware stack
        stack = app.middleware_stack
        assert isinstance(stack, FastRead)

        async def without_fast_read(scope: Any, receive: Any, send: Any) -> None:
            scope["app"] = app  # as Starlette.__call__ does
            await stack.app(scope, receive, send)

        yield client, Route(without_fast_read)


class Route:
    """GET through an ASGI app in this thread (no server, no lifespan): the app's middleware and routes alone."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def get(self, path: str) -> httpx.Response:
        async def get() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://users") as client:
                response = await client.get(path)
                await response.aread()
                return response

        return asyncio.run(get())


def answer(response: httpx.Response) -> tuple[int, str, bytes]:
    return response.status_code, response.headers["content-type"], response.content


@pytest.mark.parametrize("spell", [str, str.upper], ids=["lower", "upper"])
def test_a_found_user_is_answered_as_the_route_answers(both: tuple[httpx.Client, Route], spell: object) -> None:
    client, route = both
    created = client.post("/v1/users", json={"name": "Ozzy Osbourne", "password": "12345"}).json()
    client.patch(f"/v1/users/{created['id']}", json={"name": "Ozzy"})
    path = f"/v1/users/{spell(created['id'])}"  # type: ignore[operator]
    fast = client.get(path)
    assert fast.status_code == 200
    assert fast.json() == {**created, "name": "Ozzy", "updated_at": fast.json()["updated_at"]}
    assert fast.json()["updated_at"] >= created["updated_at"]
    assert answer(fast) == answer(route.get(path))
    assert fast.headers["x-request-id"]  # the access log still sees it


@pytest.mark.parametrize(
    "path",
    [
        "/v1/users/2c7c7e4e-0f3a-4d8e-9a43-3f1e6c9b5d10",
        "/v1/users/not-a-uuid",
        "/v1/users/5b0f8a2e-6d1c-4e7b-8f9a-1a2b3c4d5e6fx",
        "/v1/users/9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b/",
    ],
)
def test_what_it_does_not_find_goes_on_to_the_route(both: tuple[httpx.Client, Route], path: str) -> None:
    client, route = both
    fast, routed = client.get(path), route.get(path)
    assert fast.status_code in (404, 307)  # 307: FastAPI's redirect without the trailing slash
    assert fast.status_code == routed.status_code
    if fast.status_code == 404:
        assert answer(fast) == answer(routed)


def test_a_deleted_user_is_not_found(both: tuple[httpx.Client, Route]) -> None:
    client, _ = both
    created = client.post("/v1/users", json={"name": "Ozzy Osbourne", "password": "12345"}).json()
    assert client.get(f"/v1/users/{created['id']}").status_code == 200
    assert client.delete(f"/v1/users/{created['id']}").status_code == 204
    gone = client.get(f"/v1/users/{created['id']}")
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
