"""The ``eventaudit`` command line: help, environment, errors, and each command, mostly as real processes."""

from __future__ import annotations

import json
import os
import re
import select
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy

from eventaudit import db
from eventaudit.audit import migrate
from eventaudit.audit.store import AuditStore
from eventaudit.cli import main
from eventaudit.events import CloudEvent
from eventaudit.events.bindings import http as http_binding
from tests.e2e.running import (
    INGEST_TOKEN,
    READ_TOKEN,
    AuditService,
    CLIProcess,
    environment,
    items,
    run_cli,
    wait_for,
)
from tests.integration.servers import free_port

pytestmark = pytest.mark.e2e

UNREACHABLE = "http://127.0.0.1:9/"  # the discard port: nobody listens there


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No EVENTAUDIT_* variable of this process reaches the command line run in it."""
    for name in list(os.environ):
        if name.startswith("EVENTAUDIT_"):
            monkeypatch.delenv(name)
    return monkeypatch


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``eventaudit ARGS`` in this process (for what cannot start a server): exit status, stdout, stderr.

    Parsing, help and verify are the same code in a process of their own; running them here spares
    a Python start and the imports each time.
    """
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --- help and version -------------------------------------------------------------------------------------------

HELP = {
    (): ("tamper-evident audit log", ["--version", "audit", "verify", "send", "tail"]),
    ("audit",): (
        "Run the audit service",
        [
            "--host",
            "--port",
            "--db",
            "--read-token",
            "--ingest-token",
            "--kafka-bootstrap",
            "--kafka-topic",
            "--kafka-group",
            "--kafka-option",
            "--max-body",
            "--allowed-origin",
            "--allowed-rate",
            "--commit-window-ms",
            "--migrate",
            "--log-level",
        ],
    ),
    ("verify",): ("hash chain", ["--db", "--quiet"]),
    ("send",): (
        "Send one CloudEvent",
        [
            "url",
            "--type",
            "--source",
            "--id",
            "--subject",
            "--time",
            "--data",
            "--datacontenttype",
            "--dataschema",
            "--ext",
            "--mode",
            "--ingest-token",
            "--token",
        ],
    ),
    ("tail",): (
        "Follow the audit log",
        ["url", "--read-token", "--token", "--json", "--type", "--source", "--subject", "--from-start"],
    ),
}


@pytest.mark.parametrize("command", list(HELP), ids=lambda c: " ".join(c) or "eventaudit")
def test_help_explains_the_command_and_every_flag(
    command: tuple[str, ...], clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text, err = run_main(capsys, *command, "--help")
    assert code == 0, err
    assert text.startswith(f"usage: eventaudit {' '.join(command)}".rstrip())
    purpose, flags = HELP[command]
    flat = " ".join(text.split())
    assert purpose in flat
    for flag in flags:
        assert flag in text, f"{flag} is not in the help of {command}"
        if flag.startswith("--") and flag != "--version":
            assert "EVENTAUDIT_" + flag[2:].upper().replace("-", "_") in flat, f"{flag} does not name its variable"
    # every flag says what it is for: none whose explanation is only the [env …] note
    bare = re.findall(r"(--[\w-]+)(?: [A-Z_]+| \{[^}]*\})?(?:, --[\w-]+(?: [A-Z_]+)?)* \[env ", flat)
    assert bare == [], f"flags without an explanation: {bare}"


@pytest.mark.parametrize("flag", ["--version", "--help"])
def test_the_installed_command_runs(flag: str) -> None:
    script = Path(sys.executable).parent / "eventaudit"
    assert script.is_file(), "the eventaudit console script is not installed in this environment"
    done = subprocess.run([str(script), flag], capture_output=True, text=True, env=environment(), check=False)
    assert done.returncode == 0, done.stderr
    if flag == "--version":
        assert done.stdout == f"eventaudit {version('eventaudit')}\n"
    else:
        assert done.stdout.startswith("usage: eventaudit [-h] [--version] COMMAND ...")
        assert "EVENTAUDIT_<FLAG>" in done.stdout


# --- flags, the environment, and errors ------------------------------------------------------------------------

BAD_FLAGS = [
    (["audit", "--port", "70000"], "a port is between 1 and 65535"),
    (["audit", "--port", "eighty"], "not a port number: 'eighty'"),
    (["audit", "--max-body", "0"], "--max-body: must be at least 1"),
    (["audit", "--log-level", "loud"], "invalid choice: 'loud'"),
    (["verify", "--db", "redis://localhost/0"], "unsupported database URL"),
    (["send", "ftp://example.com/", "--type", "t", "--source", "/s"], "not an http:// or https:// URL"),
    (["send", UNREACHABLE, "--source", "/s"], "the following arguments are required: --type"),
    (["send", UNREACHABLE, "--type", "t", "--source", "/s", "--data", "{nope"], "--data is not JSON"),
    (["send", UNREACHABLE, "--type", "t", "--source", "/s", "--ext", "novalue"], "--ext takes NAME=VALUE"),
    (["send", UNREACHABLE, "--type", "t", "--source", "/s", "--ext", "Bad_Name=1"], "not a valid CloudEvent"),
    (["tail", "ftp://127.0.0.1:9/", "--token", READ_TOKEN], "not an http:// or https:// URL"),
    (["launch"], "invalid choice: 'launch'"),
    (["audit", "--kafka-option", "novalue"], "a Kafka option is KEY=VALUE"),
    (["users", "--kafka-option", "=x"], "a Kafka option is KEY=VALUE"),
    (["up", "--transport", "pigeon"], "invalid choice: 'pigeon'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_bad_flag_is_a_clear_error_and_exit_2(
    args: list[str], message: str, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = run_main(capsys, *args)
    assert code == 2, err
    assert err.startswith("usage: eventaudit")
    assert message in err


SETTINGS_ERRORS = [
    (["--db", "mysql://localhost/audit"], "unsupported database URL"),
    (["--read-token", "short"], "tokens must be at least 16 characters long"),
    (["--ingest-token", "short-too"], "tokens must be at least 16 characters long"),
    (["--kafka-bootstrap", "nohost"], "--kafka-bootstrap: a broker is HOST:PORT, not 'nohost'"),
    (["--kafka-bootstrap", "127.0.0.1:9", "--kafka-topic", "a b"], "--kafka-topic: 'a b' is not a Kafka topic name"),
    (["--kafka-bootstrap", "127.0.0.1:9", "--kafka-option", "foo=bar"], 'No such configuration property: "foo"'),
]


USERS_SETTINGS_ERRORS = [
    (["--sink", "kafka:///audit"], "--sink: not a kafka://HOST:PORT[,HOST:PORT]/TOPIC URL"),
    (["--sink", "kafka://127.0.0.1:9/a b"], "is not a Kafka topic name"),
    (["--sink", "kafka://127.0.0.1:9/audit", "--sink-mode", "batch"], "Kafka has no batch content mode"),
    (["--sink", "kafka://127.0.0.1:9/audit", "--kafka-option", "acks=several"], "--kafka-option:"),
]


@pytest.mark.parametrize("command", ["users", "relay"])
@pytest.mark.parametrize(
    ("args", "message"), USERS_SETTINGS_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_a_sink_the_relay_cannot_use_is_a_clear_error_and_exit_2(
    command: str, args: list[str], message: str, tmp_path: Path
) -> None:
    port = ["--port", str(free_port())] if command == "users" else ["--metrics-port", "0"]
    done = run_cli(command, *args, *port, "--db", f"sqlite:///{tmp_path / 'u.db'}", cwd=tmp_path, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("args", "message"), SETTINGS_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_settings_the_service_cannot_use_are_a_clear_error_and_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    defaults = ["--port", str(free_port())] + ["--db", f"sqlite:///{tmp_path / 'a.db'}"] * ("--db" not in args)
    done = run_cli("audit", *args, *defaults, cwd=tmp_path, timeout=30)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert "read token" not in done.stderr  # no token is handed out by a service that does not start


@pytest.mark.parametrize(
    ("args", "env", "variable"),
    [
        (["audit"], {"EVENTAUDIT_PORT": "80800"}, "EVENTAUDIT_PORT"),
        (["audit"], {"EVENTAUDIT_LOG_LEVEL": "loud"}, "EVENTAUDIT_LOG_LEVEL"),
        (["send", UNREACHABLE, "--type", "t", "--source", "/s"], {"EVENTAUDIT_MODE": "pigeon"}, "EVENTAUDIT_MODE"),
        (["verify"], {"EVENTAUDIT_QUIET": "perhaps"}, "EVENTAUDIT_QUIET"),
    ],
)
def test_a_bad_environment_value_is_an_error_naming_the_variable(
    args: list[str],
    env: dict[str, str],
    variable: str,
    clean_env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        clean_env.setenv(name, value)
    code, _out, err = run_main(capsys, *args)
    assert code == 2, err
    assert err.startswith("usage: eventaudit")
    assert variable in err


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_non_loopback_address_without_a_read_token_refuses_to_start(how: str, tmp_path: Path) -> None:
    host = ["--host", "0.0.0.0"] if how == "flag" else []
    env = {"EVENTAUDIT_HOST": "0.0.0.0"} if how == "environment" else {}
    args = ["audit", *host, "--port", str(free_port()), "--db", f"sqlite:///{tmp_path / 'a.db'}"]
    done = run_cli(*args, env=env, cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a read token" in done.stderr
    assert "--read-token" in done.stderr
    assert "read token (generated" not in done.stderr


def _status(url: str, token: str | None) -> int:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.get(url + "/v1/events", headers=headers, timeout=10).status_code


def test_on_loopback_a_read_token_is_generated_shown_once_and_works(tmp_path: Path) -> None:
    service = AuditService(f"sqlite:///{tmp_path / 'a.db'}", read_token=None, cwd=tmp_path)
    try:
        service.wait_for_output("read token (generated, shown once): ")
        token = re.search(r"read token \(generated, shown once\): (\S+)", service.stderr)
        assert token is not None
        assert len(token[1]) >= 16
        assert _status(service.url, token[1]) == 200
        assert _status(service.url, None) == 401
        assert _status(service.url, token[1][:-1] + "x") == 401
    finally:
        assert service.stop() == 0, service.output()
    assert (service.stdout + service.stderr).count(token[1]) == 1


def test_the_environment_configures_the_service(tmp_path: Path) -> None:
    port = free_port()
    first, second = "first-read-token-0123456789", "second-read-token-0123456789"
    env = {
        "EVENTAUDIT_PORT": str(port),
        "EVENTAUDIT_DB": f"sqlite:///{tmp_path / 'env.db'}",
        "EVENTAUDIT_READ_TOKEN": f"{first}, {second}",
        "EVENTAUDIT_LOG_LEVEL": "warning",
    }
    service = CLIProcess("audit", env=env, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        service.wait_for_output(f"audit service on {url}/")
        wait_for(lambda: _answers(url), 30, f"{url}/healthz")
        assert _status(url, first) == 200
        assert _status(url, second) == 200
        assert _status(url, "third-read-token-0123456789") == 401
    finally:
        assert service.stop() == 0, service.output()
    assert (tmp_path / "env.db").is_file()
    assert "generated" not in service.stderr


def _answers(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# --- audit --migrate -------------------------------------------------------------------------------------------


def test_migrate_creates_the_schema_and_exits(db_url: str, tmp_path: Path) -> None:
    done = run_cli("audit", "--migrate", "--db", db_url, "--port", str(free_port()), cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "is up to date" in done.stderr
    engine = db.create(db_url)
    try:
        tables = set(sqlalchemy.inspect(engine).get_table_names())
        assert {"audit_events", "audit_chain_head"} <= tables
        assert AuditStore(engine).head() == (0, bytes(32))
    finally:
        engine.dispose()


def test_migrate_reads_the_database_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "from-env.db"
    done = run_cli("audit", "--migrate", env={"EVENTAUDIT_DB": f"sqlite:///{path}"}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    verified = run_cli("verify", env={"EVENTAUDIT_DB": f"sqlite:///{path}"}, cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK: 0 records")


@pytest.mark.parametrize("migrate_only", [True, False], ids=["--migrate", "serve"])
def test_an_unreachable_database_is_a_clear_error(migrate_only: bool, tmp_path: Path) -> None:
    url = f"postgresql://audit:secret-password@127.0.0.1:{free_port()}/audit"
    args = ["audit", "--db", url, "--port", str(free_port()), "--read-token", READ_TOKEN]
    done = run_cli(*args, *(["--migrate"] if migrate_only else []), cwd=tmp_path, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "127.0.0.1" in done.stderr
    assert "Connection refused" in done.stderr or "connection failed" in done.stderr
    assert "Traceback" not in done.stderr
    assert "secret-password" not in done.stderr


# --- send ------------------------------------------------------------------------------------------------------


ENV_READ_TOKEN = "env-read-token-0123456789"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditService]:
    """One audit service for the send and tail tests: ingest token required, bodies up to 4 KiB.

    Its environment says another port (not even a number) and another read token: the flags must win.
    """
    path = tmp_path_factory.mktemp("cli-audit")
    env = {"EVENTAUDIT_PORT": "not-a-port", "EVENTAUDIT_READ_TOKEN": ENV_READ_TOKEN}
    audit = AuditService(
        f"sqlite:///{path / 'audit.db'}", "--ingest-token", INGEST_TOKEN, "--max-body", "4096", cwd=path, env=env
    )
    yield audit
    assert audit.stop() == 0, audit.output()


def test_flags_win_over_the_environment(service: AuditService) -> None:
    assert _status(service.url, READ_TOKEN) == 200
    assert _status(service.url, ENV_READ_TOKEN) == 401


def _the_event(url: str, event_id: str) -> dict[str, Any]:
    found = items(url, id=event_id)
    assert len(found) == 1, found
    event: dict[str, Any] = found[0]["event"]
    return event


TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_send_stores_the_event_in_every_content_mode(service: AuditService, mode: str) -> None:
    event_id = f"send-{mode}-{uuid.uuid4()}"
    args = ["--type", "user.created", "--source", "/cli/send", "--id", event_id, "--subject", "42"]
    args += ["--data", '{"id": "42", "name": "ada"}', "--ext", "partitionkey=42", "--ext", f"traceparent={TRACEPARENT}"]
    done = run_cli("send", service.url + "/", *args, "--mode", mode, "--token", INGEST_TOKEN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"sent {event_id}")
    event = _the_event(service.url, event_id)
    time = event.pop("time")
    assert isinstance(time, str)
    assert time.endswith("Z")
    assert event == {
        "specversion": "1.0",
        "id": event_id,
        "source": "/cli/send",
        "type": "user.created",
        "subject": "42",
        "datacontenttype": "application/json",
        "partitionkey": "42",
        "traceparent": TRACEPARENT,
        "data": {"id": "42", "name": "ada"},
    }


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        (["--ingest-token", INGEST_TOKEN], {}),
        ([], {"EVENTAUDIT_INGEST_TOKEN": INGEST_TOKEN}),
        ([], {"EVENTAUDIT_TOKEN": INGEST_TOKEN}),
    ],
    ids=["--ingest-token", "EVENTAUDIT_INGEST_TOKEN", "EVENTAUDIT_TOKEN"],
)
def test_send_takes_the_ingest_token_every_way(service: AuditService, flags: list[str], env: dict[str, str]) -> None:
    event_id = str(uuid.uuid4())
    args = ["--type", "note.taken", "--source", "/cli/token", "--id", event_id]
    args += ["--datacontenttype", "text/plain", "--data", "plain words"]
    done = run_cli("send", service.url, *args, *flags, env=env)
    assert done.returncode == 0, done.stderr
    assert _the_event(service.url, event_id)["data"] == "plain words"


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ([], "HTTP 401"),
        (["--token", "wrong-ingest-token-0123456789"], "HTTP 401"),
        (["--token", INGEST_TOKEN, "--data", json.dumps({"padding": "x" * 5000})], "HTTP 413"),
    ],
    ids=["no token", "wrong token", "too large"],
)
def test_a_rejected_event_exits_1_and_is_not_stored(service: AuditService, flags: list[str], reason: str) -> None:
    event_id = str(uuid.uuid4())
    done = run_cli("send", service.url, "--type", "t.rejected", "--source", "/cli/rejected", "--id", event_id, *flags)
    assert done.returncode == 1, done.stderr
    assert f"rejected: {reason}" in done.stderr
    assert INGEST_TOKEN not in done.stderr
    assert items(service.url, id=event_id) == []


def test_the_default_commit_window_answers_at_once(service: AuditService) -> None:
    """--commit-window-ms defaults to half a millisecond: a lone request is not held back waiting for company."""
    elapsed = []
    for _ in range(3):
        started = time.monotonic()
        _post(service, CloudEvent.create(type="t.quick", source="/cli/window"))
        elapsed.append(time.monotonic() - started)
    assert sorted(elapsed)[1] < 0.5, elapsed


def test_an_unreachable_receiver_exits_3() -> None:
    done = run_cli("send", f"http://127.0.0.1:{free_port()}/", "--type", "t", "--source", "/s", timeout=30)
    assert done.returncode == 3, done.stderr
    assert "try again later: ConnectError" in done.stderr


# --- verify ----------------------------------------------------------------------------------------------------


def _log_of_five(url: str) -> None:
    engine = db.create(url, writer=True)
    try:
        migrate.upgrade(engine)
        store = AuditStore(engine)
        made = [
            CloudEvent.create(type="user.created", source="/cli/verify", id=f"v{n}", subject=f"u{n}", data={"n": n})
            for n in range(1, 6)
        ]
        store.append([made[:2]])
        store.append([made[2:3], made[3:]])
    finally:
        engine.dispose()


def test_verify_counts_an_intact_log(db_url: str, tmp_path: Path) -> None:
    _log_of_five(db_url)
    done = run_cli("verify", "--db", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"OK: 5 records, chain head [0-9a-f]{64}\n", done.stdout)


@pytest.mark.parametrize(
    ("tampering", "seq", "what"),
    [
        ("UPDATE audit_events SET event = replace(event, '\"n\":3', '\"n\":33') WHERE seq = 3", 3, "was changed"),
        ("UPDATE audit_events SET subject = 'someone else' WHERE seq = 2", 2, "column subject"),
        ("UPDATE audit_events SET recordedtime = recordedtime + 1 WHERE seq = 1", 1, "was changed"),
        ("DELETE FROM audit_events WHERE seq = 4", 4, "removed"),
        ("DELETE FROM audit_events WHERE seq = 5", 5, "removed"),
    ],
    ids=["event", "column", "recordedtime", "middle removed", "last removed"],
)
def test_verify_names_the_first_tampered_record(
    tampering: str, seq: int, what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.db"
    _log_of_five(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute(tampering).rowcount == 1
    conn.close()
    code, out, err = run_main(capsys, "verify", "--db", f"sqlite:///{path}")
    assert code == 1, out + err
    assert out.startswith(f"TAMPERED: record {seq}: ")
    assert what in out


@pytest.mark.parametrize("case", ["missing file", "not a database", "no audit schema", "unreachable server"])
def test_verify_exits_2_when_the_log_cannot_be_read(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.db"
    if case == "not a database":
        path.write_bytes(b"this is not a SQLite database, it is a grocery list" * 100)
    elif case == "no audit schema":
        sqlite3.connect(path).close()
    url = f"sqlite:///{path}"
    if case == "unreachable server":
        url = f"postgresql://audit@127.0.0.1:{free_port()}/audit"
    code, out, err = run_main(capsys, "verify", "--db", url)
    assert code == 2, out + err
    assert err.startswith(
        "eventaudit verify: cannot read the audit log at"
        if case != "missing file"
        else "eventaudit verify: there is no audit log at"
    )
    if case == "missing file":
        assert not path.exists(), "verify created the database it was asked to check"
    if case == "no audit schema":
        assert "--migrate" in err


# --- tail ------------------------------------------------------------------------------------------------------


def _post(service: AuditService, *events: CloudEvent) -> None:
    headers, body = http_binding.encode_batch(events) if len(events) > 1 else http_binding.encode_binary(events[0])
    headers["authorization"] = f"Bearer {INGEST_TOKEN}"
    response = httpx.post(service.url + "/", headers=headers, content=body, timeout=10)
    assert response.status_code == 200, response.text


def test_tail_prints_new_events_like_the_write_up(service: AuditService) -> None:
    before = CloudEvent.create(type="user.created", source="/cli/tail-before", data={"id": "0"})
    _post(service, before)
    env = {"EVENTAUDIT_READ_TOKEN": f"{READ_TOKEN},another-read-token-0123456789"}
    tail = CLIProcess("tail", service.url, env=env)
    try:
        tail.wait_for_output("following")
        event = CloudEvent.create(
            type="user.storeUser",
            source="github.com/eminetto/post-cloudevents",
            subject="8aadf8c5-9c4e-4c11-af24-beac2fb9a4b7",
            data={"id": "8aadf8c5-9c4e-4c11-af24-beac2fb9a4b7"},
            extensions={"partitionkey": "8aadf8c5"},
        )
        _post(service, event)
        tail.wait_for_output('  "id": "8aadf8c5-9c4e-4c11-af24-beac2fb9a4b7"\n  }\n', stream="stdout")
    finally:
        tail.stop()
    expected = f"""Context Attributes,
  specversion: 1.0
  type: user.storeUser
  source: github.com/eminetto/post-cloudevents
  subject: 8aadf8c5-9c4e-4c11-af24-beac2fb9a4b7
  id: {event.id}
  time: {event.time}
  datacontenttype: application/json
Extensions,
  partitionkey: 8aadf8c5
Data,
  {{
    "id": "8aadf8c5-9c4e-4c11-af24-beac2fb9a4b7"
  }}
"""
    assert expected in tail.stdout
    assert re.match(r"seq \d+ recorded \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\nContext Attributes,", tail.stdout)
    assert before.id not in tail.stdout


def test_tail_json_prints_only_what_the_filters_match(service: AuditService) -> None:
    source = f"/cli/tail/{uuid.uuid4()}"
    tail = CLIProcess("tail", service.url, "--json", "--type", "user.*", "--source", source, "--token", READ_TOKEN)
    try:
        tail.wait_for_output("following")
        sent = [
            CloudEvent.create(type="order.created", source=source, data={"n": 1}),
            CloudEvent.create(type="user.created", source="/somewhere/else", data={"n": 2}),
            CloudEvent.create(type="users.created", source=source, data={"n": 3}),
            CloudEvent.create(type="user.created", source=source, data={"n": 4}),
            CloudEvent.create(type="user.deleted", source=source, data={"n": 5}),
        ]
        _post(service, *sent)
        marker = CloudEvent.create(type="user.updated", source=source, data={"n": 6})
        _post(service, marker)
        tail.wait_for_output(marker.id, stream="stdout")
    finally:
        tail.stop()
    lines = [json.loads(line) for line in tail.stdout.splitlines()]
    assert [line["event"]["id"] for line in lines] == [sent[3].id, sent[4].id, marker.id]
    assert [line["event"]["data"] for line in lines] == [{"n": 4}, {"n": 5}, {"n": 6}]
    assert all(set(line) == {"seq", "recordedtime", "event"} for line in lines)
    assert lines[0]["seq"] < lines[1]["seq"] < lines[2]["seq"]


def test_tail_from_start_prints_the_log_before_following(service: AuditService) -> None:
    source = f"/cli/tail/{uuid.uuid4()}"
    earlier = [CloudEvent.create(type="user.created", source=source, data={"n": n}) for n in range(3)]
    _post(service, *earlier)
    tail = CLIProcess("tail", service.url, "--json", "--from-start", "--source", source, "--token", READ_TOKEN)
    try:
        tail.wait_for_output(earlier[-1].id, stream="stdout")
    finally:
        tail.stop()
    assert [json.loads(line)["event"]["id"] for line in tail.stdout.splitlines()] == [e.id for e in earlier]


def test_tail_with_a_wrong_token_exits_1_saying_why(service: AuditService) -> None:
    done = run_cli("tail", service.url, "--token", "wrong-read-token-0123456789", timeout=30)
    assert done.returncode == 1
    assert "HTTP 401" in done.stderr
    assert "token was missing or wrong" in done.stderr
    assert done.stdout == ""


def test_tail_stops_quietly_when_its_reader_goes_away(service: AuditService) -> None:
    source = f"/cli/tail/{uuid.uuid4()}"
    tail = CLIProcess("tail", service.url, "--json", "--source", source, "--token", READ_TOKEN, read_stdout=False)
    try:
        tail.wait_for_output("following")
        _post(service, CloudEvent.create(type="user.created", source=source))
        stdout = tail.proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], 30)
        assert ready, "tail printed nothing"
        assert json.loads(stdout.readline())["event"]["source"] == source
        stdout.close()  # like `eventaudit tail | head -1`
        _post(service, CloudEvent.create(type="user.created", source=source))
        assert tail.wait(timeout=15) == 0
    finally:
        tail.kill()
    assert "Traceback" not in tail.stderr
    assert "reconnecting" not in tail.stderr
