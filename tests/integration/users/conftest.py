"""The users service over real HTTP (``create_app(settings)`` on uvicorn), its database, and audit services.

``start_users`` runs one on a database URL; ``users_service`` is one per test (SQLite and PostgreSQL);
``shared_users`` is one per module and database kind, for tests that only add users.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from sqlalchemy import Engine, select

from eventaudit import db
from eventaudit.audit.app import create_app as create_audit_app
from eventaudit.audit.settings import AuditSettings
from eventaudit.users.app import create_app
from eventaudit.users.models import outbox
from eventaudit.users.models import users as users_table
from eventaudit.users.settings import UsersSettings
from tests.integration.audit.conftest import READ_TOKEN, AuditServer, kind_of, new_database
from tests.integration.servers import free_port, serve_in_thread

SECRET = "correct-horse-battery-staple-7f3e9c"
"""A password distinctive enough that finding it anywhere is a leak."""
OZZY = b'{\n  "name": "Ozzy Osbourne",\n  "password": "12345"\n}'
"""The write-up's curl body, byte for byte (curl -d $'{...}')."""
JSON = {"content-type": "application/json"}


def unused_sink() -> str:
    """A sink URL where nothing listens."""
    return f"http://127.0.0.1:{free_port()}/"


@dataclass
class UsersServer:
    """A running users service: URL, settings, an HTTP client, and an engine to look into its database."""

    url: str
    settings: UsersSettings
    client: httpx.Client
    engine: Engine

    def create(self, name: str = "Ozzy Osbourne", password: str = "12345", **headers: str) -> dict[str, Any]:
        """``POST /v1/users``, insisting on a 201; the created user."""
        response = self.client.post("/v1/users", json={"name": name, "password": password}, headers=headers)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def patch(self, user_id: str, **fields: Any) -> dict[str, Any]:
        response = self.client.patch(f"/v1/users/{user_id}", json=fields)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def user_rows(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(select(users_table).order_by(users_table.c.created_at))]

    def outbox_rows(self) -> list[dict[str, Any]]:
        """Every outbox row in position order, with ``event`` decoded."""
        with self.engine.connect() as conn:
            rows = [dict(row._mapping) for row in conn.execute(select(outbox).order_by(outbox.c.position))]
        for row in rows:
            row["event"] = msgspec.json.decode(row["event"])
        return rows

    def metric(self, name: str) -> float:
        response = self.client.get("/metrics")
        assert response.status_code == 200
        for line in response.text.splitlines():
            series, _, value = line.rpartition(" ")
            if series == name:
                return float(value)
        raise AssertionError(f"no metric {name} in /metrics")


@contextlib.contextmanager
def start_users(url: str, **overrides: Any) -> Iterator[UsersServer]:
    """A running users service on ``url``; the relay is off unless ``overrides`` turn it on."""
    settings = replace(UsersSettings(db=url, relay=False, sink=unused_sink()), **overrides)
    engine = db.create(url)
    try:
        with serve_in_thread(create_app(settings)) as base, httpx.Client(base_url=base, timeout=30) as client:
            yield UsersServer(base, settings, client, engine)
    finally:
        engine.dispose()


@pytest.fixture
def users_db(db_url: str) -> str:
    """The users database of this test (SQLite and PostgreSQL)."""
    return db_url


@pytest.fixture
def users_service(users_db: str) -> Iterator[UsersServer]:
    """A users service of this test alone, relay off."""
    with start_users(users_db) as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_users(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UsersServer]:
    """One users service per module and database kind, relay off."""
    with new_database(str(request.param), tmp_path_factory.mktemp("users")) as url, start_users(url) as server:
        yield server


@contextlib.contextmanager
def audit_on(
    directory: Path,
    port: int | None = None,
    *,
    url: str | None = None,
    wrap: Callable[[Any], Any] | None = None,
    **overrides: Any,
) -> Iterator[AuditServer]:
    """A real audit service (SQLite in ``directory`` unless ``url`` is given) on ``port`` (default: a free one).

    ``wrap`` may put an ASGI middleware of the test's own around the app.
    """
    url = url or f"sqlite:///{directory / f'audit-{uuid.uuid4().hex[:8]}.db'}"
    settings = replace(AuditSettings(db=url, read_tokens=(READ_TOKEN,)), **overrides)
    app = create_audit_app(settings)
    with (
        serve_in_thread(wrap(app) if wrap else app, port=port) as base,
        httpx.Client(base_url=base, timeout=10) as client,
        httpx.Client(base_url=base, timeout=10, headers={"authorization": f"Bearer {READ_TOKEN}"}) as reader,
    ):
        yield AuditServer(base, settings, client, reader, kind_of(url))


def by_subject(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Audit log items (in log order) grouped by the event's subject (the user id)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        grouped.setdefault(item["event"]["subject"], []).append(item["event"])
    return grouped


def assert_per_user_order(items: list[dict[str, Any]]) -> None:
    """Each user's events are in the log once each, in the order of their ``sequence``: 1, 2, 3, …"""
    ids = [item["event"]["id"] for item in items]
    assert len(ids) == len(set(ids)), "an event was stored twice"
    for subject, events in by_subject(items).items():
        sequences = [int(event["sequence"]) for event in events]
        assert sequences == list(range(1, len(events) + 1)), (subject, sequences)
