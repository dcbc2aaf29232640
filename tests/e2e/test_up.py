"""``eventaudit up``: the README's first command. A newcomer pastes the write-up's curl and sees the event."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.e2e.running import READ_TOKEN, CLIProcess, items, wait_for
from tests.integration.servers import free_port
from tests.integration.users.conftest import OZZY

pytestmark = pytest.mark.e2e


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz").status_code == 200
    except httpx.TransportError:  # not listening yet
        return False


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("transport", ["http", pytest.param("kafka", marks=pytest.mark.kafka)])
def test_up_runs_the_whole_system_and_the_write_ups_request_reaches_the_log(transport: str, tmp_path: Path) -> None:
    users_port, audit_port, kafka_port = free_port(), free_port(), free_port()
    args = ["up", "--users-port", str(users_port), "--audit-port", str(audit_port), "--data", str(tmp_path / "data")]
    args += ["--read-token", READ_TOKEN, "--transport", transport, "--kafka-port", str(kafka_port)]
    up = CLIProcess(*args, cwd=tmp_path)
    try:
        up.wait_for_output("Ctrl-C stops everything", timeout=60)
        assert f"transport {transport}" in up.stderr
        if transport == "kafka":
            assert "in memory only" in up.stderr
            assert _listening(kafka_port), "the development broker is not listening"
        users, audit = f"http://127.0.0.1:{users_port}", f"http://127.0.0.1:{audit_port}"
        wait_for(lambda: _ready(users), 30, "the users service")
        wait_for(lambda: _ready(audit), 60, "the audit service (and its consumer)")
        # the write-up's curl, byte for byte
        created = httpx.post(users + "/v1/user", content=OZZY, headers={"content-type": "application/json"})
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]

        def logged() -> bool:
            return any(item["event"]["subject"] == user_id for item in items(audit, type="user.created"))

        wait_for(logged, 60, "the user.created event in the audit log")
        (item,) = [i for i in items(audit, type="user.created") if i["event"]["subject"] == user_id]
        assert item["event"]["data"]["name"] == "Ozzy Osbourne"
        assert "12345" not in str(item)
    finally:
        code = up.stop(60)
    assert code == 0, up.output()
    if transport == "kafka":
        wait_for(lambda: not _listening(kafka_port), 20, "the development broker to stop with eventaudit up")
