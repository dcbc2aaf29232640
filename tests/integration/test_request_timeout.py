"""The request timeout: a request must arrive whole within ``--request-timeout`` seconds of its first byte.

A request whose line, headers or body stop coming (a slowloris) is answered ``408`` as a problem
document with ``Connection: close``, and the connection is closed: on the direct route (counted as
broken off) and through ASGI (the app's task sees ``http.disconnect`` and ends). Answers owed to
the pipelined requests before it come first (RFC 9112 §9.3.2). Once a request is whole the limit no
longer applies: an answer that takes long is the server's time, not the client's.

Real servers on loopback ports with a 0.5 s limit, bytes over a socket; the h11 fallback protocol
is run through the same tests where it has the feature (it has no direct routes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventaudit import httpserver
from eventaudit.audit.app import create_app
from eventaudit.audit.settings import AuditSettings
from eventaudit.audit.settings import SettingsError as AuditSettingsError
from eventaudit.cli import main
from eventaudit.directroute import Answer, RawHeaders
from eventaudit.httpprotocol import ProblemH11Protocol
from eventaudit.httptoolsprotocol import ProblemHttpToolsProtocol
from eventaudit.users.settings import SettingsError as UsersSettingsError
from eventaudit.users.settings import UsersSettings
from tests.e2e.running import CLIProcess
from tests.integration.audit.test_direct_ingest import Reader, event_body, post
from tests.integration.servers import free_port, metric_value

TIMEOUT = 0.5
KEEP_ALIVE = 1.5
PROBLEM = "application/problem+json"
READ_TOKEN = "read-token-for-request-timeout"
INCOMPLETE = ("eventaudit_rejected_requests_total", {"reason": "incomplete"})


# --- servers --------------------------------------------------------------------------------------


@dataclass
class Running:
    """A server on a loopback port, run by ``httpserver.server`` as the services run it."""

    address: tuple[str, int]
    server: httpserver.Server

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def connect(self) -> socket.socket:
        return socket.create_connection(self.address, timeout=10)

    def tasks(self) -> int:
        """ASGI tasks still running (a request's app call waiting for its body is one)."""
        return len(self.server.server_state.tasks)


@contextlib.contextmanager
def serving(app: Any, http: type[asyncio.Protocol] = ProblemHttpToolsProtocol) -> Iterator[Running]:
    port = free_port()
    server = httpserver.server(app, "127.0.0.1", port, request_timeout=TIMEOUT)
    server.config.timeout_keep_alive = KEEP_ALIVE  # type: ignore[assignment]  # uvicorn says int; a float works
    server.config.http = http
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    try:
        yield Running(("127.0.0.1", port), server)
    finally:
        server.should_exit = True
        thread.join(30)


class SlowEcho:
    """A direct route echoing the body, after ``X-Delay`` seconds when the request has that header."""

    max_body = 1024
    noted_headers = ()

    def __init__(self) -> None:
        self.broken_off_count = 0

    def begin(self, headers: RawHeaders, first: Mapping[bytes, bytes]) -> Answer | None:
        return None

    def too_large(self, size: int) -> Answer:
        return Answer(413, b"text/plain", b"too large")

    def broken_off(self) -> None:
        self.broken_off_count += 1

    def handle(self, headers: RawHeaders, body: bytes, reply: Any) -> None:
        answer = Answer(200, b"text/plain", b"direct:" + body)
        delay = _delay(headers)
        if delay:
            asyncio.get_running_loop().call_later(delay, reply, answer)
        else:
            reply(answer)


class SlowEchoApp:
    """ASGI: any request's body echoed back (after ``X-Delay`` seconds); ``POST /`` is the direct route."""

    def __init__(self) -> None:
        self.route = SlowEcho()
        self.state = type("State", (), {"direct_routes": {(b"POST", b"/"): self.route}})()
        self.disconnects = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnects += 1
                return
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        await asyncio.sleep(_delay(scope["headers"]))
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % (len(body) + 5))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"asgi:" + body})


def _delay(headers: RawHeaders) -> float:
    return next((float(value) for name, value in headers if name == b"x-delay"), 0.0)


@pytest.fixture(
    scope="module",
    params=[pytest.param(ProblemHttpToolsProtocol, id="httptools"), pytest.param(ProblemH11Protocol, id="h11")],
)
def echo(request: pytest.FixtureRequest) -> Iterator[tuple[Running, SlowEchoApp]]:
    """The slow echo, on each of our protocols (h11 has no direct routes: everything goes through ASGI)."""
    app = SlowEchoApp()
    with serving(app, request.param) as running:
        yield running, app


@pytest.fixture(scope="module")
def httptools_echo() -> Iterator[tuple[Running, SlowEchoApp]]:
    """The slow echo on the httptools protocol alone: direct routes, and answers to pipelined requests in turn."""
    app = SlowEchoApp()
    with serving(app) as running:
        yield running, app


def prefix(running: Running, target: bytes) -> bytes:
    """What the slow echo puts before the body it echoes: which path answered."""
    direct = target == b"/" and running.server.config.http is ProblemHttpToolsProtocol
    return b"direct:" if direct else b"asgi:"


@dataclass
class Audit:
    running: Running

    def metric(self, name: str, **labels: str) -> float:
        response = httpx.get(self.running.url + "/metrics", timeout=10)
        assert response.status_code == 200
        return metric_value(response.text, name, **labels)

    def stored(self, source: str) -> list[Any]:
        response = httpx.get(
            self.running.url + "/v1/events",
            params={"source": source},
            headers={"authorization": f"Bearer {READ_TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        items: list[Any] = response.json()["items"]
        return items


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Audit]:
    """The audit service (SQLite) with the short request timeout."""
    db = f"sqlite:///{tmp_path_factory.mktemp('request-timeout') / 'audit.db'}"
    with serving(create_app(AuditSettings(db=db, read_tokens=(READ_TOKEN,)))) as running:
        yield Audit(running)


# --- helpers --------------------------------------------------------------------------------------


def request_head(target: bytes, *headers: bytes, length: int | None = None) -> bytes:
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: 127.0.0.1", *headers]
    if length is not None:
        lines.append(b"Content-Length: %d" % length)
    return b"\r\n".join([*lines, b"", b""])


def assert_timed_out(reader: Reader, sent_at: float) -> None:
    """The next answer is the 408 problem, about ``TIMEOUT`` after ``sent_at``, closing; then the server closes."""
    status, headers, body = reader.answer()
    elapsed = time.monotonic() - sent_at
    assert status == 408, body
    assert headers["content-type"] == PROBLEM
    assert headers["connection"] == "close"
    problem = json.loads(body)
    assert problem["status"] == 408
    assert problem["title"] == "Request Timeout"
    assert f"{TIMEOUT:g} seconds" in problem["detail"]
    assert TIMEOUT - 0.05 < elapsed < TIMEOUT + 2, elapsed
    assert_closed(reader)


def assert_closed(reader: Reader) -> None:
    """The server closed the connection (EOF, no more bytes); a read times out if it did not."""
    reader.sock.settimeout(3)
    with contextlib.suppress(ConnectionResetError):
        assert reader.closed(), reader.buffer


def wait_until(condition: Any, what: str, timeout: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def echoed(reader: Reader, body: bytes, prefix: bytes) -> None:
    status, _, answer = reader.answer()
    assert (status, answer) == (200, prefix + body)


# --- a request that never finishes ----------------------------------------------------------------

UNFINISHED_HEADS = [
    pytest.param(b"P", id="first-byte"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n", id="headers"),
    pytest.param(b"POST /elsewhere HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le", id="mid-header"),
]


@pytest.mark.parametrize("sent", UNFINISHED_HEADS)
def test_headers_never_finished_are_answered_408_and_closed(echo: tuple[Running, SlowEchoApp], sent: bytes) -> None:
    running, _ = echo
    with running.connect() as sock:
        sock.sendall(sent)
        assert_timed_out(Reader(sock), time.monotonic())


def test_body_short_of_its_length_on_the_direct_route_is_408_counted_and_the_service_goes_on(audit: Audit) -> None:
    source = f"https://tests.example.com/request-timeout/{time.monotonic_ns()}"
    request = post(event_body(source))
    before = audit.metric(INCOMPLETE[0], **INCOMPLETE[1])
    with audit.running.connect() as sock:
        sock.sendall(request[:-10])
        assert_timed_out(Reader(sock), time.monotonic())
    assert audit.metric(INCOMPLETE[0], **INCOMPLETE[1]) == before + 1
    assert audit.stored(source) == []
    with audit.running.connect() as sock:
        sock.sendall(request)
        status, _, body = Reader(sock).answer()
    assert status == 200, body
    assert len(audit.stored(source)) == 1


@pytest.mark.parametrize("target", [pytest.param(b"/", id="direct"), pytest.param(b"/?via=asgi", id="asgi")])
def test_chunked_body_that_stops_is_408(audit: Audit, target: bytes) -> None:
    body = event_body("https://tests.example.com/request-timeout/chunked")
    head = request_head(target, b"Content-Type: application/cloudevents+json", b"Transfer-Encoding: chunked")
    with audit.running.connect() as sock:
        sock.sendall(head + b"%x\r\n%s\r\n" % (10, body[:10]))  # one chunk, and never the last one
        assert_timed_out(Reader(sock), time.monotonic())


def test_asgi_request_waiting_for_its_body_sees_a_disconnect(audit: Audit) -> None:
    # The audit app itself, reached through ASGI by the query string, waits in receive() for the body.
    request = post(event_body("https://tests.example.com/request-timeout/asgi"), target=b"/?via=asgi")
    before = audit.metric(INCOMPLETE[0], **INCOMPLETE[1])
    with audit.running.connect() as sock:
        sock.sendall(request[:-10])
        sent_at = time.monotonic()
        wait_until(lambda: audit.running.tasks() == 1, "the app's task to wait for the body")
        assert_timed_out(Reader(sock), sent_at)
    wait_until(lambda: audit.running.tasks() == 0, "the app's task to end")
    assert audit.metric(INCOMPLETE[0], **INCOMPLETE[1]) == before + 1  # the app saw the body break off


def test_asgi_task_of_the_echo_ends_on_the_timeout(echo: tuple[Running, SlowEchoApp]) -> None:
    running, app = echo
    disconnects = app.disconnects
    with running.connect() as sock:
        sock.sendall(request_head(b"/echo", length=100) + b"only part")
        sent_at = time.monotonic()
        wait_until(lambda: running.tasks() == 1, "the app's task to wait for the body")
        assert_timed_out(Reader(sock), sent_at)
    wait_until(lambda: running.tasks() == 0, "the app's task to end")
    assert app.disconnects == disconnects + 1


def test_direct_route_counts_the_timed_out_body_once(httptools_echo: tuple[Running, SlowEchoApp]) -> None:
    running, app = httptools_echo
    broken = app.route.broken_off_count
    with running.connect() as sock:
        sock.sendall(request_head(b"/", length=100) + b"only part")
        assert_timed_out(Reader(sock), time.monotonic())
    time.sleep(0.1)  # the close has been seen by the server too
    assert app.route.broken_off_count == broken + 1


# --- requests that are whole in time -------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/", b"/echo"])
def test_slow_but_steady_request_within_the_limit_is_answered(echo: tuple[Running, SlowEchoApp], target: bytes) -> None:
    running, _ = echo
    body = b"0123456789" * 5
    request = request_head(target, length=len(body)) + body
    pieces = [request[i : i + 12] for i in range(0, len(request), 12)]
    pause = (TIMEOUT * 0.6) / len(pieces)
    with running.connect() as sock:
        for piece in pieces:
            sock.sendall(piece)
            time.sleep(pause)
        echoed(Reader(sock), body, prefix(running, target))


@pytest.mark.parametrize("target", [b"/", b"/echo"])
def test_whole_request_whose_answer_takes_longer_than_both_timeouts_is_not_cut(
    echo: tuple[Running, SlowEchoApp], target: bytes
) -> None:
    running, _ = echo
    delay = KEEP_ALIVE + 0.3  # longer than the request and the keep-alive timeouts: the server's own time
    with running.connect() as sock:
        reader = Reader(sock)
        sock.sendall(request_head(target, b"X-Delay: %g" % delay, length=4) + b"slow")
        started = time.monotonic()
        echoed(reader, b"slow", prefix(running, target))
        assert time.monotonic() - started >= delay - 0.05
        sock.sendall(request_head(target, length=4) + b"next")  # and the connection is still open
        echoed(reader, b"next", prefix(running, target))


def test_idle_between_requests_longer_than_the_request_timeout_stays_open(
    echo: tuple[Running, SlowEchoApp],
) -> None:
    running, _ = echo
    with running.connect() as sock:
        reader = Reader(sock)
        sock.sendall(request_head(b"/echo", length=3) + b"one")
        echoed(reader, b"one", b"asgi:")
        time.sleep(TIMEOUT + 0.4)  # idle: the keep-alive timeout applies, not the request timeout
        sock.sendall(request_head(b"/echo", length=3) + b"two")
        echoed(reader, b"two", b"asgi:")


def test_connection_that_never_sends_a_request_is_closed_silently_after_the_keep_alive_timeout(
    echo: tuple[Running, SlowEchoApp],
) -> None:
    running, _ = echo
    with running.connect() as sock:
        started = time.monotonic()
        sock.settimeout(KEEP_ALIVE + 2)
        assert sock.recv(1024) == b""  # closed, with no answer: there was no request to answer
        assert KEEP_ALIVE - 0.1 < time.monotonic() - started < KEEP_ALIVE + 1.5


# --- pipelined: the answers before the 408 come first --------------------------------------------

TIMED_OUT_AFTER = [
    pytest.param(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n", 0, id="its-headers-unfinished"),
    pytest.param(request_head(b"/", length=50) + b"part", 1, id="direct-body-unfinished"),
    pytest.param(request_head(b"/echo", length=50) + b"part", 0, id="asgi-body-unfinished"),
]


@pytest.mark.parametrize(("unfinished", "broken_off"), TIMED_OUT_AFTER)
@pytest.mark.parametrize("first", [b"/", b"/echo"])
def test_pipelined_requests_before_the_timed_out_one_are_answered_first(
    httptools_echo: tuple[Running, SlowEchoApp], first: bytes, unfinished: bytes, broken_off: int
) -> None:
    # The first answer takes longer than the request timeout: the 408 is due while it is still owed.
    running, app = httptools_echo
    broken, disconnects = app.route.broken_off_count, app.disconnects
    prefix = b"direct:" if first == b"/" else b"asgi:"
    slow = request_head(first, b"X-Delay: %g" % (TIMEOUT + 0.4), length=3) + b"one"
    quick = request_head(first, length=3) + b"two"
    with running.connect() as sock:
        reader = Reader(sock)
        sock.sendall(slow + quick + unfinished)
        sent_at = time.monotonic()
        echoed(reader, b"one", prefix)
        echoed(reader, b"two", prefix)
        assert_timed_out(reader, sent_at)
    wait_until(lambda: running.tasks() == 0, "no task to be left")
    assert app.disconnects == disconnects  # the timed-out ASGI request never started: nobody waited
    time.sleep(0.1)  # the close has been seen by the server too
    assert app.route.broken_off_count == broken + broken_off


def test_request_behind_a_slow_answer_is_answered_408_after_it(echo: tuple[Running, SlowEchoApp]) -> None:
    # On h11 too, which reads the next request only once the answer before it is written.
    running, _ = echo
    slow = request_head(b"/echo", b"X-Delay: %g" % (TIMEOUT + 0.4), length=3) + b"one"
    with running.connect() as sock:
        reader = Reader(sock)
        sock.sendall(slow + b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sent_at = time.monotonic()
        echoed(reader, b"one", b"asgi:")
        status, _, body = reader.answer()
        assert status == 408, body
        assert time.monotonic() - sent_at > TIMEOUT
        assert_closed(reader)


# --- the flag --------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["audit", "users"])
@pytest.mark.parametrize("value", ["0", "-1", "abc", "nan", "inf", "86401"])
def test_request_timeout_flag_refuses_what_is_not_a_positive_number_of_seconds(
    command: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVENTAUDIT_REQUEST_TIMEOUT", raising=False)
    with pytest.raises(SystemExit) as exited:
        main([command, f"--request-timeout={value}"])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "--request-timeout" in error
    assert "seconds" in error


def test_request_timeout_from_the_environment_is_checked_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTAUDIT_REQUEST_TIMEOUT", "0")
    with pytest.raises(SystemExit):
        main(["users"])
    assert "EVENTAUDIT_REQUEST_TIMEOUT" in capsys.readouterr().err


@pytest.mark.parametrize("value", [0.0, -1.0, float("nan"), 86401.0])
def test_settings_refuse_a_request_timeout_that_cannot_work(value: float) -> None:
    with pytest.raises(AuditSettingsError, match="--request-timeout"):
        AuditSettings(request_timeout=value).check()
    with pytest.raises(UsersSettingsError, match="--request-timeout"):
        UsersSettings(request_timeout=value).check()


@pytest.mark.parametrize("command", ["audit", "users"])
def test_each_service_takes_the_flag(command: str, tmp_path: Path) -> None:
    port = free_port()
    db = f"sqlite:///{tmp_path / 'service.db'}"
    extra = ["--no-relay"] if command == "users" else ["--read-token", READ_TOKEN]
    service = CLIProcess(command, "--port", str(port), "--db", db, "--request-timeout", str(TIMEOUT), *extra)
    try:
        service.wait_for_output(f"service on http://127.0.0.1:{port}/")
        wait_until(lambda: _healthy(port), "the service to answer", timeout=30)
        target = b"/v1/users" if command == "users" else b"/"
        media_type = b"application/json" if command == "users" else b"application/cloudevents+json"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request_head(target, b"Content-Type: " + media_type, length=100) + b'{"name": ')
            assert_timed_out(Reader(sock), time.monotonic())
    finally:
        assert service.stop() == 0, service.output()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
