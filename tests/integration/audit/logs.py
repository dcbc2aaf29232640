"""Audit logs for store, verify and service tests: a migrated store on a database URL, events, and real faults."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine, text

from eventaudit import db
from eventaudit.audit import migrate
from eventaudit.audit.store import AuditStore
from eventaudit.events import CloudEvent
from tests.integration.conftest import PG_ADMIN

_ids = itertools.count(1)


def event(**attributes: Any) -> CloudEvent:
    """A valid event; ``attributes`` override the defaults, the id is new unless given."""
    defaults: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"event-{next(_ids)}",
        "source": "/tests",
        "type": "user.created",
    }
    return CloudEvent(**{**defaults, **attributes})


@contextlib.contextmanager
def open_store(url: str) -> Iterator[AuditStore]:
    """A store on a migrated ``url`` with a writer and a reader engine, both disposed afterwards."""
    writer = db.create(url, writer=True)
    reader = db.create(url)
    try:
        migrate.upgrade(writer)
        yield AuditStore(writer, reader)
    finally:
        writer.dispose()
        reader.dispose()


def execute(engine: Engine, statement: str, **params: Any) -> None:
    """Run one SQL statement in its own transaction, as someone with database access would."""
    with engine.begin() as conn:
        conn.execute(text(statement), params)


def refuse_head_updates(engine: Engine) -> None:
    """A trigger that makes the database reject every update of the chain head (a real fault, late in append)."""
    _refuse(engine, "BEFORE UPDATE ON audit_chain_head", "")


def refuse_events_of_type(engine: Engine, type_: str) -> None:
    """A trigger that makes the database reject inserting an event of ``type_`` (a real fault, mid-insert)."""
    _refuse(engine, "BEFORE INSERT ON audit_events", type_)


def _refuse(engine: Engine, when: str, type_: str) -> None:
    condition = f"NEW.type = '{type_}'" if type_ else "1 = 1"
    if db.is_sqlite(engine):
        execute(engine, f"CREATE TRIGGER refuse {when} WHEN {condition} BEGIN SELECT RAISE(ABORT, 'refused'); END")
        return
    execute(
        engine,
        "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
    )
    execute(engine, f"CREATE TRIGGER refuse {when} FOR EACH ROW WHEN ({condition}) EXECUTE FUNCTION refuse()")


def drop_refusal(engine: Engine, table: str) -> None:
    """Remove the trigger of :func:`refuse_head_updates` or :func:`refuse_events_of_type`."""
    execute(engine, "DROP TRIGGER refuse" if db.is_sqlite(engine) else f"DROP TRIGGER refuse ON {table}")


def database_name(url: str) -> str:
    """The PostgreSQL database of ``url``."""
    return url.rsplit("/", 1)[1].split("?", 1)[0]


@contextlib.contextmanager
def postgres_down(url: str) -> Iterator[None]:
    """The PostgreSQL database of ``url`` refuses connections and every open one is cut, until the block ends."""
    name = database_name(url)
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')


@contextlib.contextmanager
def table_gone(engine: Engine, table: str) -> Iterator[None]:
    """``table`` is renamed away (any statement on it fails) until the block ends."""
    execute(engine, f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        execute(engine, f"ALTER TABLE {table}_away RENAME TO {table}")
