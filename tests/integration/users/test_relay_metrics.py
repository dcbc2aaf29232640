"""``eventaudit relay`` run alone serves ``/healthz``, ``/readyz`` and ``/metrics`` on ``--metrics-port``.

The relay is a real process; its sink is a real audit service behind a gate the test opens and
closes (503 for everything while closed, 400 for one user's events), so the backlog, lag, retry,
sent and parked series are each seen to move. Users on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.running import CLIProcess
from tests.integration.audit.conftest import wait_until
from tests.integration.servers import free_port
from tests.integration.users.conftest import UsersServer, audit_on, start_users


class Gate:
    """ASGI middleware before the audit service: 503 to every POST while closed, 400 to one user's events."""

    def __init__(self) -> None:
        self.open = False
        self.refused_subject: str | None = None
        self.app: Any = None

    def wrap(self, app: Any) -> Any:
        self.app = app
        return self

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            subject = dict(scope["headers"]).get(b"ce-subject", b"").decode()  # the relay's default: binary mode
            if not self.open:
                await _answer(send, 503, "closed by the test")
                return
            if subject and subject == self.refused_subject:
                await _answer(send, 400, "this user's events are refused by the test")
                return
        await self.app(scope, receive, send)


async def _answer(send: Any, status: int, detail: str) -> None:
    body = json.dumps({"type": "about:blank", "status": status, "detail": detail}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def scrape(url: str) -> dict[str, float]:
    """Every sample of ``url``/metrics, by series (``name{label="value"}``), as Prometheus parses it."""
    response = httpx.get(url + "/metrics", timeout=5)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return samples


@pytest.fixture
def relay_alone(users_db: str, tmp_path: Path) -> Iterator[tuple[CLIProcess, str, Gate, Any, UsersServer]]:
    """A users service (relay off), an audit service behind a closed :class:`Gate`, and ``eventaudit relay``."""
    gate = Gate()
    port = free_port()
    with start_users(users_db) as users, audit_on(tmp_path, wrap=gate.wrap) as audit:
        relay = CLIProcess(
            "relay",
            "--db",
            users_db,
            "--sink",
            audit.url + "/",
            "--retry-max",
            "0.5",
            "--metrics-port",
            str(port),
            "--log-level",
            "warning",
        )
        url = f"http://127.0.0.1:{port}"
        relay.wait_for_output(f"relay metrics on {url}/metrics")
        try:
            yield relay, url, gate, audit, users
        finally:
            relay.kill()


def test_relay_metrics_move_as_events_wait_are_sent_and_parked(
    relay_alone: tuple[CLIProcess, str, Gate, Any, UsersServer],
) -> None:
    relay, url, gate, audit, users = relay_alone
    assert httpx.get(url + "/healthz", timeout=5).json() == {"status": "ok"}
    assert httpx.get(url + "/readyz", timeout=5).json() == {"status": "ready"}
    before = scrape(url)
    assert before["eventaudit_relay_sent_events_total"] == 0
    assert before["eventaudit_outbox_backlog_events"] == 0
    assert before["eventaudit_outbox_lag_seconds"] == 0

    kept, refused = users.create("Ozzy Osbourne"), users.create("Geezer Butler")
    users.patch(kept["id"], name="Ozzy")
    gate.refused_subject = refused["id"]

    waiting = wait_until(
        lambda: (s := scrape(url)).get('eventaudit_relay_retries_total{reason="HTTP 503"}', 0) >= 1 and s,
        what="the relay to be told 503",
    )
    assert waiting["eventaudit_outbox_backlog_events"] == 3
    assert waiting["eventaudit_outbox_lag_seconds"] > 0
    assert waiting["eventaudit_relay_sent_events_total"] == 0

    gate.open = True
    after = wait_until(
        lambda: (
            (s := scrape(url))["eventaudit_relay_sent_events_total"] == 2
            and s["eventaudit_relay_parked_total"] == 1
            # a scrape reads the backlog from the database before the counters: one may be a round behind
            and s["eventaudit_outbox_backlog_events"] == 0
            and s
        ),
        what="two events sent and one parked, and an empty backlog",
        timeout=30,
    )
    assert after["eventaudit_outbox_parked_events"] == 1
    assert after["eventaudit_outbox_lag_seconds"] == 0
    assert after["eventaudit_relay_delivery_seconds_count"] == 2
    logged = audit.items(source=users.settings.source)
    assert [item["event"]["subject"] for item in logged] == [kept["id"], kept["id"]]
    assert relay.stop() == 0


def test_relay_metrics_port_in_use_exits_2_before_relaying(users_db: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        relay = CLIProcess("relay", "--db", users_db, "--sink", "http://127.0.0.1:1/", "--metrics-port", str(port))
        assert relay.wait(60) == 2, relay.output()
    assert f"cannot serve /metrics on 127.0.0.1:{port}" in relay.stderr
    assert not re.search(r"relay [0-9a-f-]{36} started", relay.stderr), relay.stderr
