"""The relay against a real audit service (Promises 2, 3 and 6), users on SQLite and PostgreSQL.

Every event arrives once and in per-user order in every content mode; the audit service being
down never fails a user request and the backlog drains when it returns; a transaction that
commits late is not skipped; an event the sink rejects is parked while the rest go on, and
``retry_parked`` sends it again; two relays on one PostgreSQL database neither reorder nor lose.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventaudit import db
from eventaudit.transport.http import HTTPSender
from eventaudit.users import passwords, relay
from eventaudit.users.metrics import UsersMetrics
from eventaudit.users.relay import Relay, RelayOptions
from eventaudit.users.repository import OutboxRow
from eventaudit.users.service import UserService
from tests.integration.audit.conftest import AuditServer, wait_until
from tests.integration.servers import free_port, serve_in_thread
from tests.integration.users.conftest import UsersServer, assert_per_user_order, audit_on, start_users, unused_sink


def logged(audit: AuditServer, users: UsersServer) -> list[dict[str, Any]]:
    """The users service's events in the audit log, in log order."""
    return audit.items(source=users.settings.source)


def all_delivered(audit: AuditServer, users: UsersServer) -> list[dict[str, Any]] | None:
    """The logged events once every outbox event is in the log, else ``None``."""
    expected = {row["event"]["id"] for row in users.outbox_rows()}
    items = logged(audit, users)
    return items if expected and {item["event"]["id"] for item in items} >= expected else None


def change_users(users: UsersServer, count: int, renames: int, delete_every: int = 0) -> list[str]:
    """``count`` users, each renamed ``renames`` times (one thread per user); every ``delete_every``-th is deleted."""
    ids: list[str] = []
    failures: list[str] = []

    def one(n: int) -> None:
        with httpx.Client(base_url=users.url, timeout=60) as client:
            response = client.post("/v1/users", json={"name": f"user {n}", "password": "12345"})
            if response.status_code != 201:
                failures.append(response.text)
                return
            user_id = response.json()["id"]
            ids.append(user_id)
            for r in range(renames):
                if client.patch(f"/v1/users/{user_id}", json={"name": f"user {n}.{r}"}).status_code != 200:
                    failures.append(f"rename {n}.{r}")
            if delete_every and n % delete_every == 0 and client.delete(f"/v1/users/{user_id}").status_code != 204:
                failures.append(f"delete {n}")

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    return ids


@pytest.fixture
def audit(tmp_path: Path) -> Iterator[AuditServer]:
    with audit_on(tmp_path) as server:
        yield server


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_every_event_arrives_once_in_per_user_order(users_db: str, audit: AuditServer, mode: str) -> None:
    with start_users(users_db, relay=True, sink=audit.url + "/", sink_mode=mode) as users:
        change_users(users, count=8, renames=4, delete_every=3)
        items = wait_until(lambda: all_delivered(audit, users), 30, "every event in the audit log")
        rows = users.outbox_rows()
        assert len(items) == len(rows) == 8 * 5 + 3
        assert_per_user_order(items)
        assert {item["event"]["id"]: item["event"] for item in items} == {
            row["event"]["id"]: row["event"] for row in rows
        }
        wait_until(lambda: {row["state"] for row in users.outbox_rows()} == {"sent"}, 10, "every event marked sent")
        assert users.metric("eventaudit_outbox_backlog_events") == 0
        assert users.metric("eventaudit_outbox_lag_seconds") == 0
        assert users.metric("eventaudit_relay_sent_events_total") == len(rows)


def test_audit_down_while_users_are_created_then_everything_drains(users_db: str, tmp_path: Path) -> None:
    port = free_port()
    with start_users(users_db, relay=True, sink=f"http://127.0.0.1:{port}/") as users:
        ids = change_users(users, count=200, renames=0)
        assert len(ids) == 200  # every request answered 201 while the audit service was down
        renamed = ids[:50]
        for user_id in renamed:
            users.patch(user_id, name="renamed while down")
        wait_until(lambda: users.metric('eventaudit_relay_retries_total{reason="connection"}') > 0, 10, "a retry")
        assert users.metric("eventaudit_outbox_backlog_events") == 250
        assert {row["state"] for row in users.outbox_rows()} == {"pending"}

        with audit_on(tmp_path, port) as audit:
            started = time.monotonic()
            items = wait_until(lambda: all_delivered(audit, users), 30, "the backlog to drain into the audit log")
            elapsed = time.monotonic() - started
        assert elapsed < 30
        print(f"drained 250 events in {elapsed:.1f} s")
        assert len(items) == 250
        assert_per_user_order(items)


@pytest.mark.postgres
def test_a_late_committing_transaction_is_not_skipped(pg_url: str, audit: AuditServer) -> None:
    with start_users(pg_url, relay=True, sink=audit.url + "/", relay_poll=0.05) as users:
        users.create("warms the relay up")
        wait_until(lambda: all_delivered(audit, users), 10, "the first event")
        engine = db.create(pg_url, writer=True)
        try:
            conn = engine.connect()
            transaction = conn.begin()
            late = UserService(users.settings.source).create(conn, "late", passwords.hash_sync("12345"))
            early = [users.create(f"early {n}")["id"] for n in range(5)]
            wait_until(
                lambda: {i["event"]["subject"] for i in logged(audit, users)} >= set(early), 15, "the later commits"
            )
            transaction.commit()
            conn.close()
        finally:
            engine.dispose()
        items = wait_until(lambda: all_delivered(audit, users), 15, "the late commit to be delivered")
        rows = {row["user_id"]: row["position"] for row in users.outbox_rows()}
        assert all(rows[late.id] < rows[user_id] for user_id in early), "the late transaction had the lower position"
        assert late.id in {item["event"]["subject"] for item in items}
        assert_per_user_order(items)


@pytest.mark.parametrize("mode", ["binary", "batch"])
def test_a_rejected_event_is_parked_the_rest_go_on_and_retry_parked_sends_it(
    users_db: str, tmp_path: Path, mode: str
) -> None:
    port, audit_db = free_port(), f"sqlite:///{tmp_path / 'audit.db'}"
    with start_users(users_db, relay=True, sink=f"http://127.0.0.1:{port}/", sink_mode=mode) as users:
        with audit_on(tmp_path, port, url=audit_db, max_body=700) as audit:
            alice = users.create("alice")
            users.patch(alice["id"], name="\N{GRINNING FACE}" * 200)  # ~900 bytes: over the audit's limit
            users.patch(alice["id"], name="alice again")
            bob = users.create("bob")
            wait_until(lambda: len(logged(audit, users)) == 3, 20, "the three acceptable events")
            wait_until(lambda: users.metric("eventaudit_outbox_parked_events") == 1, 10, "the parked event")
            [parked] = relay.list_parked(users.engine)
            assert parked.user_id == alice["id"]
            assert parked.sequence == 2
            assert parked.last_error is not None
            assert "413" in parked.last_error
            sequences = [(i["event"]["subject"], int(i["event"]["sequence"])) for i in logged(audit, users)]
            assert sorted(sequences) == sorted([(alice["id"], 1), (alice["id"], 3), (bob["id"], 1)])
        with audit_on(tmp_path, port, url=audit_db) as audit:
            assert relay.retry_parked(users.engine) == 1
            items = wait_until(lambda: all_delivered(audit, users), 20, "the re-sent event")
            assert len(items) == 4
            assert items[-1]["event"]["id"] == parked_id(parked)
            wait_until(lambda: users.metric("eventaudit_outbox_parked_events") == 0, 10, "no parked event")
            assert relay.list_parked(users.engine) == []


def parked_id(row: OutboxRow) -> str:
    import msgspec

    event: dict[str, Any] = msgspec.json.decode(row.event)
    return str(event["id"])


def test_retry_after_is_honoured(users_db: str) -> None:
    answered: list[float] = []

    async def sink(_request: Request) -> Response:
        answered.append(time.monotonic())
        if len(answered) == 1:
            return Response(status_code=429, headers={"Retry-After": "2"})
        return Response(status_code=202)

    with (
        serve_in_thread(Starlette(routes=[Route("/", sink, methods=["POST"])])) as url,
        start_users(users_db, relay=True, sink=url + "/", retry_base=0.01, relay_poll=0.05) as users,
    ):
        users.create("patient")
        wait_until(lambda: {row["state"] for row in users.outbox_rows()} == {"sent"}, 15, "delivery after the wait")
    assert len(answered) == 2
    assert answered[1] - answered[0] >= 1.9


def _run_relay_thread(url: str, sink: str, metrics: UsersMetrics, stop: threading.Event) -> threading.Thread:
    def run() -> None:
        async def main() -> None:
            engine = db.create(url, writer=True)
            sender = HTTPSender(sink)
            one = Relay(engine, sender, RelayOptions(batch=7, poll=0.02), metrics)
            task = asyncio.create_task(one.run())
            while not stop.is_set():
                await asyncio.sleep(0.02)
            one.stop()
            await task
            await sender.close()
            engine.dispose()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.postgres
def test_two_relays_on_postgres_neither_reorder_nor_lose(pg_url: str, audit: AuditServer) -> None:
    stop = threading.Event()
    metrics = [UsersMetrics(), UsersMetrics()]
    with start_users(pg_url) as users:
        threads = [_run_relay_thread(pg_url, audit.url + "/", m, stop) for m in metrics]
        try:
            change_users(users, count=20, renames=8)
            items = wait_until(lambda: all_delivered(audit, users), 30, "every event in the audit log")
            wait_until(lambda: {row["state"] for row in users.outbox_rows()} == {"sent"}, 10, "every event marked")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert len(items) == 20 * 9
        assert_per_user_order(items)
        sent = [m.sent._value.get() for m in metrics]
        assert all(n > 0 for n in sent), f"both relays sent events: {sent}"
        assert sum(sent) >= len(items)


def test_a_relay_pointed_nowhere_keeps_the_api_answering(users_db: str) -> None:
    with start_users(users_db, relay=True, sink=unused_sink(), relay_poll=0.05) as users:
        for n in range(5):
            users.create(f"unbothered {n}")
        assert users.client.get("/readyz").status_code == 200
        assert users.metric("eventaudit_outbox_backlog_events") == 5
