"""The audit service over real HTTP: ``create_app(settings)`` on uvicorn on a free loopback port.

``audit`` is a service of its own for one test (on ``db_url``: SQLite and PostgreSQL);
``shared_audit`` is one service per module and database kind, for tests that keep to
their own ``source`` (see :func:`unique_source`) and so cannot see each other's events.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from eventaudit.audit.app import create_app
from eventaudit.audit.settings import AuditSettings
from eventaudit.events import CloudEvent
from eventaudit.events.bindings import http
from tests.conftest import require
from tests.integration.conftest import PG_ADMIN, _pg_available
from tests.integration.servers import metric_value, serve_in_thread

READ_TOKEN = "read-token-for-tests-0001"
SECOND_READ_TOKEN = "read-token-for-tests-0002"
INGEST_TOKEN = "ingest-token-for-tests-001"
PROBLEM = "application/problem+json"


def unique_source(label: str = "test") -> str:
    """A source no other test uses: filtering on it sees only this test's events."""
    return f"https://tests.example.com/{label}/{uuid.uuid4().hex[:12]}"


def wait_until(condition: Callable[[], Any], timeout: float = 10.0, what: str = "the condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem document with ``status``; returns its members."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].split(";")[0] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for member in ("type", "title", "detail"):
        assert isinstance(body[member], str), body
        assert body[member], body
    if slug is not None:
        assert body["type"] == f"urn:eventaudit:problem:{slug}", body
    return body


@dataclass
class AuditServer:
    """A running audit service: its URL and settings, a client without credentials and one with a read token."""

    url: str
    settings: AuditSettings
    client: httpx.Client
    reader: httpx.Client
    kind: str

    @property
    def ingest_token(self) -> str | None:
        return self.settings.ingest_token

    def post(self, headers: Mapping[str, str], body: bytes, **kwargs: Any) -> httpx.Response:
        """``POST /`` with the ingest token when the service has one (unless ``headers`` carry their own)."""
        headers = dict(headers)
        if self.ingest_token is not None:
            headers.setdefault("authorization", f"Bearer {self.ingest_token}")
        return self.client.post("/", headers=headers, content=body, **kwargs)

    def send(self, *events: CloudEvent, mode: str = "structured") -> httpx.Response:
        """Send ``events`` in ``mode`` (binary, structured or batch: several events are always a batch)."""
        if mode == "batch" or len(events) != 1:
            return self.post(*http.encode_batch(events))
        encode = http.encode_binary if mode == "binary" else http.encode_structured
        return self.post(*encode(events[0]))

    def stored(self, *events: CloudEvent, mode: str = "structured") -> list[int | None]:
        """Send ``events``, insist on a 200, and return the seqs the service gave them."""
        response = self.send(*events, mode=mode)
        assert response.status_code == 200, response.text
        seqs: list[int | None] = response.json()["seqs"]
        return seqs

    def page(self, **params: Any) -> dict[str, Any]:
        """One answer of ``GET /v1/events``."""
        response = self.reader.get("/v1/events", params=params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        body: dict[str, Any] = response.json()
        return body

    def items(self, **params: Any) -> list[dict[str, Any]]:
        """Every item matching ``params``, following ``next_cursor`` until a page comes back empty."""
        collected: list[dict[str, Any]] = []
        params = {"limit": 1000, **params}
        while True:
            body = self.page(**params)
            collected.extend(body["items"])
            if not body["items"] or body["next_cursor"] is None:
                return collected
            params["cursor"] = body["next_cursor"]

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of ``/metrics`` (0 when the series does not exist yet)."""
        response = self.client.get("/metrics")
        assert response.status_code == 200
        return metric_value(response.text, name, **labels)


@contextlib.contextmanager
def start_audit(db: str, kind: str, **overrides: Any) -> Iterator[AuditServer]:
    """A running audit service on ``db``; ``overrides`` change :class:`AuditSettings` fields."""
    settings = replace(
        AuditSettings(db=db, read_tokens=(READ_TOKEN, SECOND_READ_TOKEN), max_body=64 * 1024), **overrides
    )
    with (
        serve_in_thread(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
        httpx.Client(base_url=url, timeout=10, headers={"authorization": f"Bearer {READ_TOKEN}"}) as reader,
    ):
        yield AuditServer(url, settings, client, reader, kind)


def kind_of(db_url: str) -> str:
    return "sqlite" if db_url.startswith("sqlite") else "postgres"


@contextlib.contextmanager
def new_database(kind: str, directory: Path) -> Iterator[str]:
    """An empty database of ``kind`` (a SQLite file in ``directory``, or a new PostgreSQL database), removed after."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / f'audit-{uuid.uuid4().hex[:8]}.db'}"
        return
    require(_pg_available(), f"PostgreSQL is not reachable at {PG_ADMIN} (set EVENTAUDIT_TEST_POSTGRES)")
    name = f"eventaudit_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def audit(db_url: str) -> Iterator[AuditServer]:
    """An audit service of this test alone, on SQLite and on PostgreSQL."""
    with start_audit(db_url, kind_of(db_url)) as server:
        yield server


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_audit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditServer]:
    """One audit service per module and database kind; tests keep apart by their own sources."""
    kind = str(request.param)
    with new_database(kind, tmp_path_factory.mktemp("audit")) as url, start_audit(url, kind) as server:
        yield server
