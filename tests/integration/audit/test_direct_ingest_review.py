"""The direct route for ``POST /`` against what the ASGI path answers, byte for byte over a socket.

Each test sends the same bytes to ``/`` (the HTTP protocol answers it itself) and to ``/?via=asgi``
(the same endpoint through ASGI): the two must agree, and both keep to HTTP/1.1 and the promises
(answers in order, no hang, every error a problem document).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventaudit.audit.app import create_app
from eventaudit.audit.settings import AuditSettings
from tests.integration.audit.conftest import PROBLEM, READ_TOKEN, AuditServer, unique_source
from tests.integration.audit.test_direct_ingest import Reader, connect, event_body, post
from tests.integration.servers import serve_in_thread

TARGETS = [pytest.param(b"/", id="direct"), pytest.param(b"/?via=asgi", id="asgi")]


@pytest.mark.parametrize("target", TARGETS)
def test_a_long_pipeline_answered_at_once_is_answered_in_full(shared_audit: AuditServer, target: bytes) -> None:
    # Requests refused as soon as their turn comes, queued behind one being stored: each answer
    # starts the next request, and hundreds of them must not nest one call in the other.
    count = 400
    with connect(shared_audit) as sock:
        sock.settimeout(5)
        sock.sendall(
            post(event_body(unique_source("long-pipeline")), target=target) + post(b"{}", target=target) * count
        )
        reader = Reader(sock)
        statuses = [reader.answer()[0] for _ in range(count + 1)]
    assert statuses == [200] + [400] * count


@pytest.mark.parametrize("target", TARGETS)
def test_expect_100_continue_belongs_to_its_own_request(shared_audit: AuditServer, target: bytes) -> None:
    # Three pipelined requests: one being stored, one without Expect queued behind it, and the
    # headers of one with ``Expect: 100-continue``. Only the third is told to go on, after the second's answer.
    body = event_body(unique_source("expect-pipelined"))
    third = post(body, b"Expect: 100-continue", target=target)
    with connect(shared_audit) as sock:
        first = post(event_body(unique_source("expect-pipelined")), target=b"/?via=asgi")
        sock.sendall(first + post(event_body(unique_source("expect-pipelined")), target=target) + third[: -len(body)])
        reader = Reader(sock)
        assert [reader.answer()[0] for _ in range(3)] == [200, 200, 100]
        sock.sendall(body)
        assert reader.answer()[0] == 200


@pytest.mark.parametrize("target", TARGETS)
def test_no_100_continue_for_an_http_1_0_client(shared_audit: AuditServer, target: bytes) -> None:
    # RFC 9110 §15.2: a server MUST NOT send a 1xx response to an HTTP/1.0 client.
    body = event_body(unique_source("expect-1.0"))
    request = post(body, b"Expect: 100-continue", version=b"1.0", target=target)
    with connect(shared_audit) as sock:
        sock.sendall(request[: -len(body)])
        time.sleep(0.3)
        sock.sendall(body)
        status, headers, _ = Reader(sock).answer()
    assert status == 200
    assert headers["connection"] == "close"


# --- the store failing in a way nobody foresaw: a 500 problem, never a request left hanging ----------


@pytest.fixture
def failing_store(tmp_path: Path) -> Iterator[str]:
    """An audit service whose store raises an unexpected error (not the database's) on every append."""
    app = create_app(AuditSettings(db=f"sqlite:///{tmp_path / 'audit.db'}", read_tokens=(READ_TOKEN,)))

    def append(groups: object) -> list[list[int | None]]:
        raise RuntimeError("a bug in the store")

    with serve_in_thread(app) as url:
        app.state.store.append = append
        yield url


@pytest.mark.parametrize("target", TARGETS)
def test_unexpected_store_failure_is_a_500_problem(failing_store: str, target: bytes) -> None:
    host, port = failing_store.removeprefix("http://").split(":")
    request = post(event_body(unique_source("store-bug")), target=target)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        status, headers, body = Reader(sock).answer()
        assert status == 500
        assert headers["content-type"] == PROBLEM
        assert json.loads(body)["type"] == "urn:eventaudit:problem:internal"
        assert headers["x-request-id"]
        sock.sendall(request)  # the connection still serves
        assert Reader(sock).answer()[0] == 500


# --- a request the parser refuses, pipelined behind one still being answered -----------------------

UNPARSABLE = [
    pytest.param(b"NOT HTTP AT ALL\r\n\r\n", 400, id="malformed"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431, id="too-large"),
]


@pytest.mark.parametrize(("refused", "status"), UNPARSABLE)
@pytest.mark.parametrize("target", TARGETS)
def test_refusal_by_the_parser_comes_after_the_answers_before_it(
    shared_audit: AuditServer, target: bytes, refused: bytes, status: int
) -> None:
    source = unique_source("refused-behind")
    health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connect(shared_audit) as sock:
        sock.sendall(
            post(event_body(source), target=target) + health + post(event_body(source), target=target) + refused
        )
        reader = Reader(sock)
        answers = [reader.answer() for _ in range(4)]
        assert reader.closed()
    assert [answer[0] for answer in answers] == [200, 200, 200, status]
    assert answers[3][1]["content-type"] == PROBLEM
    assert answers[3][1]["connection"] == "close"
    assert len(shared_audit.page(source=source)["items"]) == 2
