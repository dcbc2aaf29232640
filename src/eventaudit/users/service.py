"""The users service's use cases: create, get, list, update and delete users.

Each change writes its CloudEvent to the outbox on the same connection, so the change and
its event commit together or not at all. The use cases never commit: :class:`UnitOfWork`
runs one of them in a transaction and commits when it returns.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format
from eventaudit.users import repository
from eventaudit.users.errors import UnavailableError, UserNotFoundError, UsersError
from eventaudit.users.repository import UserRow

T = TypeVar("T")
_log = logging.getLogger(__name__)

CREATED, UPDATED, DELETED = "user.created", "user.updated", "user.deleted"
#: Width of the ``sequence`` extension: a String that must sort lexicographically
#: (CloudEvents sequence extension), so the number is written with leading zeros.
SEQUENCE_DIGITS = 20


def now_micros() -> int:
    """Microseconds since the epoch, UTC."""
    return time.time_ns() // 1000


def rfc3339(micros: int) -> str:
    """A µs timestamp as RFC 3339 UTC with microseconds."""
    return datetime.fromtimestamp(micros / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_sequence(n: int) -> str:
    """The ``sequence`` extension value of a user's ``n``-th change."""
    return f"{n:0{SEQUENCE_DIGITS}d}"


@dataclass(frozen=True)
class User:
    """A user as clients see it: never its password."""

    id: str
    name: str
    created_at: int
    updated_at: int

    @classmethod
    def of(cls, row: UserRow) -> User:
        return cls(row.id, row.name, row.created_at, row.updated_at)

    def resource(self) -> dict[str, Any]:
        """The JSON resource of the API and the data of the events."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
        }


@dataclass(frozen=True)
class Trace:
    """W3C trace context of the request that made a change, carried into its event."""

    traceparent: str | None = None
    tracestate: str | None = None


class UserService:
    """The use cases; each takes the connection of a transaction that someone else commits."""

    def __init__(self, source: str, clock: Callable[[], int] = now_micros) -> None:
        self.source = source
        self.clock = clock

    def create(self, conn: Connection, name: str, password_hash: str, trace: Trace = Trace()) -> User:
        now = self.clock()
        row = UserRow(str(uuid.uuid4()), name, password_hash, now, now, 1)
        repository.add_user(conn, row)
        user = User.of(row)
        self._record(conn, CREATED, row.id, row.sequence, user.resource(), now, trace)
        return user

    def get(self, conn: Connection, user_id: str) -> User:
        row = repository.get_user(conn, user_id)
        if row is None:
            raise UserNotFoundError(user_id)
        return User.of(row)

    def page(self, conn: Connection, after: tuple[int, str] | None, limit: int) -> list[User]:
        return [User.of(row) for row in repository.page_users(conn, after, limit)]

    def update(
        self,
        conn: Connection,
        user_id: str,
        *,
        name: str | None = None,
        password_hash: str | None = None,
        trace: Trace = Trace(),
    ) -> tuple[User, bool]:
        """Change the name, the password or both; the user, and whether anything changed (and an event was written)."""
        row = self._locked(conn, user_id)
        if (name is None or name == row.name) and password_hash is None:
            return User.of(row), False
        now = max(self.clock(), row.updated_at)
        row = UserRow(
            row.id,
            row.name if name is None else name,
            row.password_hash if password_hash is None else password_hash,
            row.created_at,
            now,
            row.sequence + 1,
        )
        repository.update_user(conn, row)
        user = User.of(row)
        self._record(conn, UPDATED, row.id, row.sequence, user.resource(), now, trace)
        return user, True

    def delete(self, conn: Connection, user_id: str, trace: Trace = Trace()) -> None:
        row = self._locked(conn, user_id)
        now = max(self.clock(), row.updated_at)
        repository.delete_user(conn, user_id)
        self._record(conn, DELETED, user_id, row.sequence + 1, {"id": user_id}, now, trace)

    def _locked(self, conn: Connection, user_id: str) -> UserRow:
        """The user's row, locked until the transaction ends: one user's changes happen one after the other."""
        row = repository.get_user(conn, user_id, lock=True)
        if row is None:
            raise UserNotFoundError(user_id)
        return row

    def _record(
        self, conn: Connection, type_: str, user_id: str, sequence: int, data: Any, now: int, trace: Trace
    ) -> None:
        extensions: dict[str, str] = {"partitionkey": user_id, "sequence": format_sequence(sequence)}
        if trace.traceparent is not None:
            extensions["traceparent"] = trace.traceparent
            if trace.tracestate:
                extensions["tracestate"] = trace.tracestate
        event = CloudEvent.create(
            type=type_,
            source=self.source,
            subject=user_id,
            time=datetime.fromtimestamp(now / 1_000_000, UTC),
            data=data,
            datacontenttype="application/json",
            extensions=extensions,
        )
        repository.add_event(conn, user_id, sequence, json_format.encode(event).decode(), now)


class UnitOfWork:
    """Runs a use case in a transaction: writes on ``writer``, committed when the use case returns; reads on ``reader``.

    A database that cannot be reached or stays locked is :class:`UnavailableError` (503); any
    other database error is a 500 whose log line names the cause but never the statement's
    parameters (they hold a password hash).
    """

    def __init__(self, writer: Engine, reader: Engine | None = None) -> None:
        self.writer = writer
        self.reader = reader or writer

    def write(self, work: Callable[[Connection], T]) -> T:
        try:
            with self.writer.begin() as conn:
                return work(conn)
        except OperationalError as exc:
            _log.warning("a write failed: %s", _first_line(exc))
            raise UnavailableError("the database is unavailable or busy; nothing was changed, try again") from None
        except SQLAlchemyError as exc:
            _log.error("a write failed and was rolled back: %s", _first_line(exc))
            raise UsersError(500, "the change could not be stored; nothing was changed", slug="internal") from None

    def read(self, work: Callable[[Connection], T]) -> T:
        try:
            with self.reader.connect() as conn, conn.begin():
                return work(conn)
        except OperationalError as exc:
            _log.warning("a read failed: %s", _first_line(exc))
            raise UnavailableError("the database is unavailable, try again") from None
        except SQLAlchemyError as exc:
            _log.error("a read failed: %s", _first_line(exc))
            raise UsersError(500, "the users could not be read", slug="internal") from None

    def ping(self) -> None:
        with self.reader.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.writer.dispose()
        if self.reader is not self.writer:
            self.reader.dispose()


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return f"{cause.__class__.__name__}: {(str(cause).strip().splitlines() or [''])[0]}"
