"""Database URLs and engines, the same for every service: SQLite (embedded) or PostgreSQL.

``sqlite:///path`` opens SQLite in WAL mode with ``synchronous=FULL`` (a commit is on
disk when it returns); ``postgresql://…`` uses psycopg 3. A writer engine starts its
SQLite transactions with ``BEGIN IMMEDIATE`` so two writers queue for the lock
instead of failing when one upgrades a read to a write.
"""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import StaticPool

_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(password\s*=\s*)('[^']*'|\S*)", re.IGNORECASE)  # libpq "key=value" form


class DatabaseURLError(ValueError):
    """The database URL is neither ``sqlite:///…`` nor ``postgresql://…``."""


def normalize_url(url: str) -> str:
    """``url`` with the driver SQLAlchemy should use; SQLite folders are created.

    Raises:
        DatabaseURLError: an unsupported scheme, or a SQLite URL without a path.
    """
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("postgresql+psycopg://"):
        return url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///").split("?", 1)[0]
        if not path:
            raise DatabaseURLError(f"the database URL {url!r} names no file: use sqlite:///PATH or sqlite:///:memory:")
        if path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return url
    raise DatabaseURLError(f"unsupported database URL {redact(url)!r}: use sqlite:///PATH or postgresql://…")


def redact(url: str) -> str:
    """``url`` without its password (in the user part or a ``password=`` parameter), for logs and errors."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return _KEYWORD_PASSWORD.sub(r"\g<1>***", url)
    if not scheme.startswith("sqlite"):
        at = rest.rfind("@")  # the last one: a password may hold an unencoded "@"
        if at != -1:
            user, colon, _password = rest[:at].partition(":")
            rest = f"{user}{':***' if colon else ''}{rest[at:]}"
    return scheme + "://" + _QUERY_PASSWORD.sub(r"\g<1>***", rest)


def read_snapshot(connection: Connection) -> Connection:
    """``connection``, set so its next transaction reads one consistent snapshot and takes no write lock.

    PostgreSQL: ``REPEATABLE READ``. SQLite (WAL): a deferred ``BEGIN``, even on a writer engine.
    """
    if connection.dialect.name == "postgresql":
        return connection.execution_options(isolation_level="REPEATABLE READ")
    return connection.execution_options(eventaudit_sqlite_begin="BEGIN")


def is_sqlite(engine: Engine) -> bool:
    """Whether ``engine`` talks to SQLite."""
    return engine.dialect.name == "sqlite"


def create(url: str, *, writer: bool = False, pool_size: int = 5) -> Engine:
    """An engine for ``url``; ``writer=True`` for the one connection that appends.

    ``sqlite:///:memory:`` is one database on one shared connection, for tests and trials.

    Raises:
        DatabaseURLError: an unsupported scheme.
    """
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs = {"poolclass": StaticPool} if ":memory:" in url else {}
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        _tune_sqlite(engine, immediate=writer)
        return engine
    if not writer:
        kwargs.update(pool_size=pool_size, max_overflow=pool_size)
    # No server-side prepared statements: psycopg prepares a statement on its 5th run, and PostgreSQL
    # then kept a generic plan made while the table was small (a sequential scan for the audit log's
    # duplicate check, measured: each 5,000-event batch slower than the last, 0.2 s -> 2 s by 20,000 rows).
    return create_engine(url, connect_args={"connect_timeout": 5, "prepare_threshold": None}, **kwargs)


def _tune_sqlite(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy's begin event below decides
        cursor = dbapi_connection.cursor()
        # 8 KiB pages (takes effect only when the file is created): a 1 KB event fills a 4 KiB page
        # badly; measured on the audit log, about 15% less time per appended row.
        cursor.execute("PRAGMA page_size=8192")
        cursor.execute("PRAGMA busy_timeout=30000")
        _enable_wal(cursor, _WAL_SWITCH_SECONDS)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        default = "BEGIN IMMEDIATE" if immediate else "BEGIN"
        connection.exec_driver_sql(connection.get_execution_options().get("eventaudit_sqlite_begin", default))


#: How long a new connection tries to switch the file to WAL while others hold it (as busy_timeout above).
_WAL_SWITCH_SECONDS = 30.0


def _enable_wal(cursor: Any, seconds: float) -> None:
    """``PRAGMA journal_mode=WAL``, tried again while SQLite answers "database is locked".

    Connections that open a new file at once race to switch it to WAL, and SQLite refuses the losers at
    once, without waiting in its busy handler (seen under load: 3 of 240 connections, 4 at a time).
    """
    deadline = time.monotonic() + seconds
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def bound_lock_waits(engine: Engine, seconds: float) -> None:
    """Let a write wait at most ``seconds`` for a lock someone else holds, then fail (503), not hang."""
    millis = max(1, round(seconds * 1000))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if is_sqlite(engine):
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={millis}")
            cursor.close()
            return
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True  # a SET inside a transaction would roll back with it
        dbapi_connection.execute(f"SET lock_timeout = {millis}")
        dbapi_connection.autocommit = autocommit


def relax_durability(engine: Engine) -> None:
    """Commits of ``engine``'s new connections no longer wait for the disk (SQLite ``synchronous=NORMAL``
    in WAL mode, PostgreSQL ``synchronous_commit = off``).

    Only for writes that may be lost in a power failure or an OS crash without harm, because they are
    redone: the outbox relay's leases and "sent" marks (an event whose mark is lost is sent again, and
    the audit log stores it once). The database stays consistent; a process crash loses nothing.
    Call it before the engine's first connection, or dispose of the engine after.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if is_sqlite(engine):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()
            return
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        dbapi_connection.execute("SET synchronous_commit = off")
        dbapi_connection.autocommit = autocommit


def problem(url: str) -> str | None:
    """Why the database at ``url`` cannot be reached, or ``None`` when it answers."""
    engine = create(url)
    try:
        with engine.connect():
            return None
    except SQLAlchemyError as exc:
        return describe(exc)
    finally:
        engine.dispose()


def describe(exc: BaseException) -> str:
    """The first line of a database error: the cause, without the statement or its parameters."""
    cause = getattr(exc, "orig", None) or exc
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{cause.__class__.__name__}: {first}" if first else cause.__class__.__name__
