"""``POST /`` as the HTTP protocol's direct route (no ASGI per request), byte for byte over a socket.

What the ASGI path got from uvicorn and the access-log middleware, the direct route must do
itself: answer pipelined requests in order, ``Expect: 100-continue``, HTTP/1.0 closing,
``X-Request-ID`` and the access line, the keep-alive timeout; a broken-off body is counted.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import uvicorn

from eventaudit.accesslog import AccessLog
from eventaudit.directroute import Answer, RawHeaders
from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format
from eventaudit.httpserver import Server
from eventaudit.httptoolsprotocol import protocol
from tests.integration.audit.conftest import AuditServer, unique_source, wait_until
from tests.integration.servers import free_port


def post(body: bytes, *headers: bytes, version: bytes = b"1.1", target: bytes = b"/") -> bytes:
    lines = [b"POST " + target + b" HTTP/" + version, b"Host: 127.0.0.1", *headers]
    lines += [b"Content-Type: application/cloudevents+json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join([*lines, b"", b""]) + body


def event_body(source: str) -> bytes:
    return json_format.encode(CloudEvent.create(type="t.direct", source=source))


class Reader:
    """HTTP/1.1 answers read one by one from a socket (Content-Length framing, as the service answers)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"the connection closed mid-answer: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "the connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(" ")[1]), headers, body

    def closed(self) -> bool:
        return not self.buffer and not self._fill()


def connect(server: AuditServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_pipelined_requests_are_answered_in_order(shared_audit: AuditServer) -> None:
    source = unique_source("pipelined")
    bodies = [event_body(source) for _ in range(3)]
    health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(shared_audit) as sock:
        sock.sendall(post(bodies[0]) + health + post(bodies[1]) + post(b"{}") + post(bodies[2]))
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(5)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 400, 200]
    assert json.loads(answers[1][2]) == {"status": "ok"}
    seqs = [json.loads(answers[i][2])["seqs"][0] for i in (0, 2, 4)]
    assert seqs == sorted(seqs)
    assert answers[3][1]["content-type"] == "application/problem+json"
    assert len({headers["x-request-id"] for _, headers, _ in answers}) == 5
    items = shared_audit.page(source=source)["items"]
    assert [item["seq"] for item in items] == seqs


def test_expect_100_continue(shared_audit: AuditServer) -> None:
    body = event_body(unique_source("expect"))
    request = post(body, b"Expect: 100-continue")
    head, body = request[: -len(body)], request[-len(body) :]
    with connect(shared_audit) as sock:
        sock.sendall(head)
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, _, answer = Reader(sock).answer()
    assert status == 200, answer


def test_expect_100_continue_refused_before_the_body(shared_audit: AuditServer) -> None:
    limit = shared_audit.settings.max_body
    head = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\n"
        b"Content-Type: application/cloudevents+json\r\nContent-Length: %d\r\n\r\n" % (limit + 1)
    )
    with connect(shared_audit) as sock:
        sock.sendall(head)
        status, headers, answer = Reader(sock).answer()
    assert status == 413
    assert json.loads(answer)["limit"] == limit
    assert headers["content-type"] == "application/problem+json"


def test_http_1_0_answer_closes_the_connection(shared_audit: AuditServer) -> None:
    with connect(shared_audit) as sock:
        sock.sendall(post(event_body(unique_source("http10")), version=b"1.0"))
        reader = Reader(sock)
        status, headers, _ = reader.answer()
        assert status == 200
        assert headers["connection"] == "close"
        assert reader.closed()


def test_connection_close_is_honoured(shared_audit: AuditServer) -> None:
    with connect(shared_audit) as sock:
        sock.sendall(post(event_body(unique_source("close")), b"Connection: close"))
        reader = Reader(sock)
        assert reader.answer()[0] == 200
        assert reader.closed()


def test_request_id_is_echoed_and_logged(shared_audit: AuditServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="eventaudit.access")
    with connect(shared_audit) as sock:
        sock.sendall(post(event_body(unique_source("rid")), b"X-Request-ID: direct-route-test-1"))
        status, headers, _ = Reader(sock).answer()
    assert status == 200
    assert headers["x-request-id"] == "direct-route-test-1"
    record = wait_until(
        lambda: next((r for r in caplog.records if getattr(r, "request_id", None) == "direct-route-test-1"), None),
        what="the access log line",
    )
    assert (record.method, record.path, record.status) == ("POST", "/", 200)  # type: ignore[attr-defined]
    assert record.getMessage() == "POST / 200"


def test_query_string_takes_the_asgi_path_with_the_same_answer(shared_audit: AuditServer) -> None:
    source = unique_source("query")
    with connect(shared_audit) as sock:
        sock.sendall(post(event_body(source), target=b"/?via=asgi") + post(b"[]", target=b"/?via=asgi"))
        reader = Reader(sock)
        stored, empty = reader.answer(), reader.answer()
    assert stored[0] == 200
    assert json.loads(stored[2])["stored"] == 1
    assert stored[1]["x-request-id"]
    assert empty[0] == 400  # a JSON array is no single structured event
    assert len(shared_audit.page(source=source)["items"]) == 1


def test_body_broken_off_is_counted_and_stores_nothing(shared_audit: AuditServer) -> None:
    source = unique_source("broken")
    before = shared_audit.metric("eventaudit_rejected_requests_total", reason="incomplete")
    request = post(event_body(source))
    with connect(shared_audit) as sock:
        sock.sendall(request[:-5])
        time.sleep(0.1)
    wait_until(
        lambda: shared_audit.metric("eventaudit_rejected_requests_total", reason="incomplete") == before + 1,
        what="the broken-off body to be counted",
    )
    assert shared_audit.page(source=source)["items"] == []


# --- the keep-alive timeout, on a server of its own with a short one --------------------------------


class Echo:
    """A direct route answering the body back at once."""

    max_body = 1024
    noted_headers = ()

    def begin(self, headers: RawHeaders, first: Mapping[bytes, bytes]) -> Answer | None:
        return None

    def too_large(self, size: int) -> Answer:
        return Answer(413, b"text/plain", b"too large")

    def broken_off(self) -> None:
        pass

    def handle(self, headers: RawHeaders, body: bytes, reply: Any) -> None:
        reply(Answer(200, b"text/plain", body))


class EchoApp:
    """An ASGI app with the echo as its direct route; anything else is a 404."""

    def __init__(self) -> None:
        self.state = type("State", (), {"direct_routes": {(b"POST", b"/"): Echo()}})()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
def echo_url() -> Iterator[tuple[str, int]]:
    port = free_port()
    config = uvicorn.Config(
        AccessLog(EchoApp()), host="127.0.0.1", port=port, http=protocol(), lifespan="off", timeout_keep_alive=1
    )
    server = Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the echo server")
    yield ("127.0.0.1", port)
    server.should_exit = True
    thread.join(10)


def echo(sock: socket.socket, reader: Reader, text: bytes) -> None:
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(text), text))
    assert reader.answer()[::2] == (200, text)


def test_idle_connection_is_closed_after_the_keep_alive_timeout(echo_url: tuple[str, int]) -> None:
    with socket.create_connection(echo_url, timeout=10) as sock:
        reader = Reader(sock)
        echo(sock, reader, b"one")
        started = time.monotonic()
        assert reader.closed()
        assert 0.8 < time.monotonic() - started < 3


def test_busy_connection_outlives_the_keep_alive_timeout(echo_url: tuple[str, int]) -> None:
    with socket.create_connection(echo_url, timeout=10) as sock:
        reader = Reader(sock)
        for i in range(8):  # 2 s of requests 0.25 s apart: never idle for the 1 s timeout
            echo(sock, reader, b"%d" % i)
            time.sleep(0.25)
        sock.sendall(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.answer()[0] == 404  # the ASGI path on the same connection
        echo(sock, reader, b"last")
