"""Crash safety of the users service and its relay (Promises 1 and 2), as real processes killed with -9.

* Killed in the middle of a transaction (held there by a slow trigger between the user write
  and the outbox write): neither the user nor its event exists; what was committed before is
  intact, each user with its event. Killed under load: every 201 is there, with its event.
* The relay killed after the audit service stored its events and before it marked them sent:
  the events are sent again, and the audit log stores each once.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from sqlalchemy import Engine, select, text

from eventaudit import db
from eventaudit.users import migrate, passwords
from eventaudit.users.models import outbox
from eventaudit.users.models import users as users_table
from eventaudit.users.service import UnitOfWork, UserService
from tests.e2e.running import environment, wait_for
from tests.integration.audit.conftest import AuditServer
from tests.integration.servers import free_port
from tests.integration.users.conftest import audit_on

pytestmark = pytest.mark.e2e

#: ``eventaudit ARGS``, with the users and relay subcommands added when the main parser does not have them yet.
LAUNCHER = """
import argparse, sys
from eventaudit import cli
from eventaudit.users.cli import add_relay_parser, add_users_parser
parser = cli.build_parser()
commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
for name, add in (("users", add_users_parser), ("relay", add_relay_parser)):
    if name not in commands.choices:
        add(commands)
args = parser.parse_args(sys.argv[1:])
sys.exit(args.run(args, parser))
"""
SLOW = "slow-user-4f1c"


class Service:
    """``eventaudit ARGS`` in its own process, its output in a file."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, *args], env=environment(), stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def running(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()}")
        return True

    def kill(self) -> None:
        """kill -9: no shutdown, no rollback, no flushing."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def start_users(url: str, port: int, log: Path) -> Service:
    service = Service(log, "users", "--port", str(port), "--db", url, "--no-relay", "--log-level", "warning")

    def healthy() -> bool:
        service.running()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, 60, "the users service to be ready")
    return service


@contextlib.contextmanager
def engine_of(url: str) -> Iterator[Engine]:
    engine = db.create(url)
    try:
        yield engine
    finally:
        engine.dispose()


def stored(engine: Engine) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
    """Users (id -> name) and the outbox events by user id."""
    with engine.connect() as conn:
        names = {row.id: row.name for row in conn.execute(select(users_table.c.id, users_table.c.name))}
        events: dict[str, list[dict[str, Any]]] = {}
        for row in conn.execute(select(outbox.c.user_id, outbox.c.event).order_by(outbox.c.position)):
            events.setdefault(row.user_id, []).append(msgspec.json.decode(row.event))
    return names, events


# --- the users process killed mid-transaction -----------------------------------------------------


def _slow_outbox_insert(url: str, engine: Engine) -> None:
    """Make the outbox insert of the user named :data:`SLOW` take (practically) forever."""
    with engine.begin() as conn:
        if db.is_sqlite(engine):
            conn.execute(text("CREATE TABLE slow_rows (x INTEGER)"))
            conn.execute(
                text(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 3000) "
                    "INSERT INTO slow_rows SELECT x FROM n"
                )
            )
            conn.execute(
                text(
                    f"CREATE TRIGGER slow BEFORE INSERT ON outbox WHEN NEW.event LIKE '%{SLOW}%' "
                    "BEGIN SELECT count(*) FROM slow_rows a, slow_rows b, slow_rows c; END"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE FUNCTION slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.event LIKE '%{SLOW}%' THEN PERFORM pg_sleep(3); END IF; RETURN NEW; END $$"
                )
            )
            conn.execute(text("CREATE TRIGGER slow BEFORE INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION slow()"))


def _inside_the_transaction(url: str) -> Callable[[], bool]:
    """Whether the users process is inside the slow transaction right now."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")

        def writer_holds_the_lock() -> bool:
            conn = sqlite3.connect(path, timeout=0, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:
                return True
            else:
                conn.execute("ROLLBACK")
                return False
            finally:
                conn.close()

        return writer_holds_the_lock
    name = url.rsplit("/", 1)[1]

    def sleeping_in_the_trigger() -> bool:
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event = 'PgSleep'", (name,)
            ).fetchone()
        return bool(row and row[0])

    return sleeping_in_the_trigger


def _no_backend_left(url: str) -> Callable[[], bool]:
    name = url.rsplit("/", 1)[1]

    def gone() -> bool:
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND pid <> pg_backend_pid() AND wait_event = 'PgSleep'",
                (name,),
            ).fetchone()
        return not (row and row[0])

    return gone


def test_kill_9_in_the_middle_of_a_transaction_leaves_neither_user_nor_event(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = start_users(db_url, port, tmp_path / "users.log")
    restarted: Service | None = None
    try:
        committed = [httpx.post(base + "/v1/users", json={"name": f"kept {n}", "password": "12345"}) for n in range(3)]
        assert [r.status_code for r in committed] == [201, 201, 201]
        with engine_of(db_url) as engine:
            _slow_outbox_insert(db_url, engine)
        answers: list[Any] = []

        def post_slow() -> None:
            try:
                answers.append(httpx.post(base + "/v1/users", json={"name": SLOW, "password": "12345"}, timeout=60))
            except httpx.HTTPError as exc:
                answers.append(exc)

        poster = threading.Thread(target=post_slow, daemon=True)
        poster.start()
        wait_for(_inside_the_transaction(db_url), 30, "the users process to be inside the slow transaction")
        service.kill()
        poster.join(30)
        assert len(answers) == 1
        assert isinstance(answers[0], httpx.HTTPError), "the request ended before the kill"
        if not db_url.startswith("sqlite"):
            wait_for(_no_backend_left(db_url), 30, "PostgreSQL to notice the dead client and roll back")

        with engine_of(db_url) as engine:
            names, events = stored(engine)
        assert SLOW not in names.values()
        assert all(SLOW not in str(e) for user_events in events.values() for e in user_events)
        kept = {r.json()["id"]: r.json()["name"] for r in committed}
        assert names == kept
        assert {user_id: [e["type"] for e in events[user_id]] for user_id in kept} == {
            user_id: ["user.created"] for user_id in kept
        }
        assert set(events) == set(kept)

        restarted = start_users(db_url, port, tmp_path / "users-2.log")
        assert httpx.post(base + "/v1/users", json={"name": "after", "password": "12345"}).status_code == 201
        assert restarted.stop() == 0, restarted.output()
    finally:
        service.kill()
        if restarted is not None:
            restarted.kill()


def test_kill_9_under_load_keeps_every_201_with_its_event(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    service = start_users(db_url, port, tmp_path / "users.log")
    acknowledged: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def create(worker: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    response = client.post("/v1/users", json={"name": f"load {worker}.{n}", "password": "12345"})
                except httpx.HTTPError:
                    return
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                else:
                    failures.append(response.text)

    workers = [threading.Thread(target=create, args=(w,), daemon=True) for w in range(8)]
    try:
        for worker in workers:
            worker.start()
        wait_for(lambda: len(acknowledged) >= 20, 60, "20 users to be created")
        service.kill()
        stop.set()
        for worker in workers:
            worker.join(30)
    finally:
        service.kill()
    assert not failures
    with engine_of(db_url) as engine:
        names, events = stored(engine)
    assert set(acknowledged) <= set(names), "a user answered 201 is missing"
    assert set(events) == set(names), "a user without its event, or an event without its user"
    assert all([e["type"] for e in user_events] == ["user.created"] for user_events in events.values())


# --- the relay killed between sending and marking --------------------------------------------------


class _Gate:
    """Wraps the audit app: the first delivery locks the users outbox, so the relay cannot mark it sent."""

    def __init__(self, url: str) -> None:
        self.app: Any = None
        self.url = url
        self.closed = threading.Event()
        self._lock: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not self.closed.is_set():
            self.close()
        await self.app(scope, receive, send)

    def close(self) -> None:
        conn: Any
        if self.url.startswith("sqlite"):
            conn = sqlite3.connect(
                self.url.removeprefix("sqlite:///"), timeout=10, isolation_level=None, check_same_thread=False
            )
            conn.execute("BEGIN IMMEDIATE")
        else:
            conn = psycopg.connect(self.url)
            conn.execute("LOCK TABLE outbox IN SHARE MODE")
        self._lock = conn
        self.closed.set()

    def wrap(self, app: Any) -> _Gate:
        self.app = app
        return self

    def open(self) -> None:
        """Release the lock (the first delivery's transaction is rolled back)."""
        if isinstance(self._lock, sqlite3.Connection):
            self._lock.execute("ROLLBACK")
        elif self._lock is not None:
            self._lock.rollback()
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _events_in_outbox(url: str, count: int) -> list[str]:
    writer, reader = db.create(url, writer=True), db.create(url)
    try:
        migrate.upgrade(writer)
        uow, service = UnitOfWork(writer, reader), UserService("/e2e/users")
        password_hash = passwords.hash_sync("12345")
        return [
            uow.write(partial(service.create, name=f"relayed {n}", password_hash=password_hash)).id
            for n in range(count)
        ]
    finally:
        writer.dispose()
        reader.dispose()


def _states(url: str) -> list[str]:
    with engine_of(url) as engine, engine.connect() as conn:
        return [row.state for row in conn.execute(select(outbox.c.state))]


def test_kill_9_of_the_relay_between_sending_and_marking_is_absorbed_by_the_audit_log(
    db_url: str, tmp_path: Path
) -> None:
    ids = _events_in_outbox(db_url, 5)
    port = free_port()
    relay_args = [
        "relay",
        "--db",
        db_url,
        "--sink",
        f"http://127.0.0.1:{port}/",
        "--relay-lease",
        "4",
        "--metrics-port",
        "0",
    ]
    relay_args += ["--sink-timeout", "2", "--retry-max", "1"]
    gate = _Gate(db_url)
    with audit_on(tmp_path, port, wrap=gate.wrap) as audit:
        first = Service(tmp_path / "relay.log", *relay_args)
        second: Service | None = None
        try:
            wait_for(lambda: first.running() and len(logged(audit)) == 5, 30, "the audit log to store all five")
            assert gate.closed.is_set()
            assert _states(db_url) == ["pending"] * 5, "the relay marked events it should not have been able to"
            first.kill()
            gate.open()
            assert _states(db_url) == ["pending"] * 5

            second = Service(tmp_path / "relay-2.log", *relay_args)
            wait_for(lambda: second.running() and _states(db_url) == ["sent"] * 5, 30, "the events re-sent and marked")
            assert second.stop() == 0, second.output()
        finally:
            gate.open()
            first.kill()
            if second is not None:
                second.kill()
        items = logged(audit)
        assert sorted(item["event"]["subject"] for item in items) == sorted(ids)
        assert len({item["event"]["id"] for item in items}) == 5, "an event was stored twice"
        assert audit.metric("eventaudit_duplicate_events_total", transport="http") == 5, "nothing was sent again"


def logged(audit: AuditServer) -> list[dict[str, Any]]:
    return audit.items(source="/e2e/users")
