"""The outbox promise (Promise 1): a user change is committed if and only if its event is in the outbox.

On SQLite and PostgreSQL: each change writes exactly one event in its own transaction, with the
per-user ``sequence``; a failure between the user write and the commit leaves neither; and the
password is nowhere: not in the database, the logs, the events or the errors.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from eventaudit import db
from eventaudit.events.formats import json as json_format
from eventaudit.httpserver import JSONFormatter
from eventaudit.users import migrate, passwords
from eventaudit.users.service import CREATED, UnitOfWork, UserService
from tests.integration.audit.conftest import assert_problem
from tests.integration.audit.logs import execute
from tests.integration.users.conftest import JSON, SECRET, UsersServer

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def events_of(users: UsersServer, user_id: str) -> list[dict[str, Any]]:
    return [row["event"] for row in users.outbox_rows() if row["user_id"] == user_id]


def test_each_change_writes_one_event_with_the_user(users_service: UsersServer) -> None:
    users = users_service
    user = users.create("Ozzy Osbourne", SECRET)
    renamed = users.patch(user["id"], name="Ozzy")
    repassworded = users.patch(user["id"], password=SECRET + "-2")
    users.patch(user["id"], name="Ozzy")  # changes nothing: no event
    assert users.client.delete(f"/v1/users/{user['id']}").status_code == 204

    rows = users.outbox_rows()
    assert [row["event"]["type"] for row in rows] == ["user.created", "user.updated", "user.updated", "user.deleted"]
    assert [row["sequence"] for row in rows] == [1, 2, 3, 4]
    assert {row["state"] for row in rows} == {"pending"}
    for row in rows:
        event = row["event"]
        json_format.from_dict(event)  # a valid CloudEvent
        assert event["specversion"] == "1.0"
        assert event["source"] == users.settings.source
        assert event["subject"] == event["partitionkey"] == user["id"] == row["user_id"]
        assert int(event["sequence"]) == row["sequence"]
        assert event["datacontenttype"] == "application/json"
        assert "traceparent" not in event
    assert [row["event"]["data"] for row in rows[:3]] == [user, renamed, repassworded]
    assert rows[3]["event"]["data"] == {"id": user["id"]}
    assert rows[0]["event"]["time"] == user["created_at"]
    assert rows[1]["event"]["time"] == renamed["updated_at"]
    ids = [row["event"]["id"] for row in rows]
    assert len(set(ids)) == 4


def test_sequence_is_per_user_and_sorts_as_text(users_service: UsersServer) -> None:
    users = users_service
    alice, bob = users.create("alice"), users.create("bob")
    for n in range(11):
        users.patch(alice["id"], name=f"alice {n}")
        if n % 3 == 0:
            users.patch(bob["id"], name=f"bob {n}")
    for user, count in ((alice, 12), (bob, 5)):
        events = events_of(users, user["id"])
        assert [int(e["sequence"]) for e in events] == list(range(1, count + 1))
        texts = [e["sequence"] for e in events]
        assert texts == sorted(texts)  # the sequence extension is a lexicographically-orderable String


def test_concurrent_changes_of_one_user_get_contiguous_sequences(users_service: UsersServer) -> None:
    users = users_service
    user = users.create("contended")
    errors: list[str] = []

    def rename(n: int) -> None:
        response = users.client.patch(f"/v1/users/{user['id']}", json={"name": f"name {n}"})
        if response.status_code != 200:
            errors.append(response.text)

    threads = [threading.Thread(target=rename, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    events = events_of(users, user["id"])
    assert [int(e["sequence"]) for e in events] == list(range(1, 18))
    times = [e["time"] for e in events]
    assert times == sorted(times)
    final = users.client.get(f"/v1/users/{user['id']}").json()
    assert events[-1]["data"] == final


def test_trace_context_is_carried_into_the_event(users_service: UsersServer) -> None:
    users = users_service
    user = users.create("traced", traceparent=TRACEPARENT, tracestate="vendor=abc,other=1")
    [event] = events_of(users, user["id"])
    assert event["traceparent"] == TRACEPARENT
    assert event["tracestate"] == "vendor=abc,other=1"
    response = users.client.delete(f"/v1/users/{user['id']}", headers={"traceparent": TRACEPARENT})
    assert response.status_code == 204
    assert events_of(users, user["id"])[-1]["traceparent"] == TRACEPARENT


@pytest.mark.parametrize(
    "traceparent",
    [
        "not a trace",
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # version 00 has nothing more
        "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case
    ],
)
def test_an_invalid_traceparent_is_ignored(users_service: UsersServer, traceparent: str) -> None:
    user = users_service.create("untraced", traceparent=traceparent, tracestate="vendor=abc")
    [event] = events_of(users_service, user["id"])
    assert "traceparent" not in event
    assert "tracestate" not in event


# --- a change and its event commit together ------------------------------------------------------


def _refuse_outbox_inserts(engine: Engine) -> None:
    """A trigger that fails every outbox insert: the user row is written, then the transaction fails before commit."""
    if db.is_sqlite(engine):
        execute(engine, "CREATE TRIGGER refuse BEFORE INSERT ON outbox BEGIN SELECT RAISE(ABORT, 'refused'); END")
        return
    execute(
        engine,
        "CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused'; END $$",
    )
    execute(engine, "CREATE TRIGGER refuse BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION refuse()")


def _drop_refusal(engine: Engine) -> None:
    execute(engine, "DROP TRIGGER refuse" if db.is_sqlite(engine) else "DROP TRIGGER refuse ON outbox")


def test_a_failed_event_write_leaves_no_user(users_service: UsersServer) -> None:
    users = users_service
    kept = users.create("before the fault")
    _refuse_outbox_inserts(users.engine)
    response = users.client.post("/v1/users", json={"name": "doomed", "password": SECRET})
    assert_problem(response, 500, "internal")
    assert SECRET not in response.text
    renamed = users.client.patch(f"/v1/users/{kept['id']}", json={"name": "doomed rename"})
    assert_problem(renamed, 500, "internal")
    deleted = users.client.delete(f"/v1/users/{kept['id']}")
    assert_problem(deleted, 500, "internal")
    assert [row["name"] for row in users.user_rows()] == ["before the fault"]
    assert [row["event"]["type"] for row in users.outbox_rows()] == ["user.created"]
    _drop_refusal(users.engine)
    users.create("after the fault")
    assert [row["name"] for row in users.user_rows()] == ["before the fault", "after the fault"]
    assert len(users.outbox_rows()) == 2


class _CrashError(Exception):
    pass


def test_a_failure_after_the_writes_and_before_commit_leaves_neither(users_db: str) -> None:
    writer, reader = db.create(users_db, writer=True), db.create(users_db)
    try:
        migrate.upgrade(writer)
        uow, service = UnitOfWork(writer, reader), UserService("/tests/users")
        password_hash = passwords.hash_sync(SECRET)

        def create_then_crash(conn: Any) -> None:
            service.create(conn, "half-done", password_hash)
            counts = conn.execute(text("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM outbox)")).one()
            assert tuple(counts) == (1, 1)  # both written, in this transaction
            raise _CrashError

        with pytest.raises(_CrashError):
            uow.write(create_then_crash)
        with reader.connect() as conn:
            counts = conn.execute(text("SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM outbox)")).one()
        assert tuple(counts) == (0, 0)
        user = uow.write(lambda conn: service.create(conn, "done", password_hash))
        with reader.connect() as conn:
            rows = conn.execute(text("SELECT user_id, event FROM outbox")).all()
        assert [(r.user_id, json_format.decode(r.event).type) for r in rows] == [(user.id, CREATED)]
    finally:
        writer.dispose()
        reader.dispose()


# --- no password anywhere ------------------------------------------------------------------------


def _database_text(users: UsersServer) -> str:
    """Everything the users and outbox tables hold, as text."""
    with users.engine.connect() as conn:
        rows = [*conn.execute(text("SELECT * FROM users")), *conn.execute(text("SELECT * FROM outbox"))]
    return "\n".join(repr(tuple(row)) for row in rows)


def _database_files(url: str) -> bytes:
    path = Path(url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


def test_no_password_in_the_database_the_logs_the_events_or_the_answers(
    users_service: UsersServer, caplog: pytest.LogCaptureFixture
) -> None:
    users = users_service
    caplog.set_level(logging.DEBUG)
    answers = []
    user = users.create("secretive", SECRET)
    answers.append(users.client.patch(f"/v1/users/{user['id']}", json={"password": SECRET + "2"}))
    answers.append(users.client.patch(f"/v1/users/{user['id']}", json={"name": "", "password": SECRET}))
    answers.append(users.client.post("/v1/users", json={"name": "x", "password": SECRET, "passwd": SECRET}))
    answers.append(users.client.post("/v1/users", content=f'{{"password": "{SECRET}"'.encode(), headers=JSON))
    answers.append(users.client.post("/v1/users", json={"name": "x" * 300, "password": SECRET}))
    _refuse_outbox_inserts(users.engine)
    answers.append(users.client.post("/v1/users", json={"name": "fails", "password": SECRET}))
    _drop_refusal(users.engine)
    assert [a.status_code for a in answers] == [200, 422, 422, 400, 422, 500]
    for answer in answers:
        assert SECRET not in answer.text

    access = [r for r in caplog.records if r.name == "eventaudit.access"]
    assert len(access) >= 7, "every request is logged"
    assert all({"method", "path", "status", "elapsed_ms", "request_id"} <= set(vars(r)) for r in access)
    assert any(r.levelno >= logging.ERROR for r in caplog.records), "the failed write is logged"
    formatter = JSONFormatter()
    for record in caplog.records:
        assert SECRET not in formatter.format(record)

    stored = _database_text(users)
    assert "secretive" in stored  # the check reads the real rows
    assert SECRET not in stored
    for row in users.outbox_rows():
        assert SECRET not in json_format.encode(json_format.from_dict(row["event"])).decode()
        assert "password" not in str(row["event"]).lower()
    if users.settings.db.startswith("sqlite"):
        raw = _database_files(users.settings.db)
        assert b"secretive" in raw
        assert SECRET.encode() not in raw
        assert SECRET.encode("utf-16-le") not in raw
