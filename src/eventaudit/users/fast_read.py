"""``GET /v1/users/{id}`` answered before routing: the users service's hot read path.

FastAPI's routing, dependency solving and middleware stack cost more than the lookup itself.
:class:`FastRead`, outermost in the app, answers a user that is found directly, with the body
and headers the route gives; everything else (another path or method, an id that is no UUID,
a user not found, a database that fails) goes on to the app, which answers it as before (404
or 503 as problem+json). On SQLite the lookup runs on the event loop: one row by primary key in
WAL mode takes microseconds and never waits for a writer, less than handing it to a thread.
Elsewhere (PostgreSQL, a network round trip) it runs in a worker thread.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from functools import partial
from typing import Any

import msgspec
from starlette.concurrency import run_in_threadpool

from eventaudit import db
from eventaudit.users import repository
from eventaudit.users.errors import UsersError
from eventaudit.users.repository import UserRow
from eventaudit.users.service import UnitOfWork, User

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PREFIX = "/v1/users/"
_encoder = msgspec.json.Encoder()
_ID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
"""A user id as the route accepts it: a UUID in its 8-4-4-4-12 form, either case."""


class FastRead:
    """ASGI middleware: a found user for ``GET /v1/users/{id}``; anything else to ``app``."""

    def __init__(self, app: ASGIApp, uow: UnitOfWork) -> None:
        self.app = app
        self.uow = uow
        self._inline = db.is_sqlite(uow.reader)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith(PREFIX) and _ID.fullmatch(path, len(PREFIX)):
                row = await self._find(path[len(PREFIX) :].lower())
                if row is not None:
                    body = _encoder.encode(User.of(row).resource())
                    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _find(self, user_id: str) -> UserRow | None:
        lookup = partial(repository.get_user, user_id=user_id)
        try:
            if self._inline:
                return self.uow.read(lookup)
            return await run_in_threadpool(self.uow.read, lookup)
        except UsersError:
            return None  # the app answers it, as problem+json
