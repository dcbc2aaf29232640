"""Edges of HTTP/1.1 framing on ``POST /``, on the direct route and through ASGI, byte for byte over a socket.

* A final answer sent on the headers alone to ``Expect: 100-continue``, before the body was read and
  with no 100 sent, closes the connection (RFC 9110 §10.1.1, RFC 9112 §9.6): the client may never
  send the body, and its next request must not be read as that body.
* A transfer coding other than ``chunked`` is not implemented (RFC 9112 §6.1: 501); one where
  ``chunked`` is not the last cannot be framed at all (RFC 9112 §6.3: 400). Both close.
* More than one ``Host`` is a 400 (RFC 9112 §3.2).

Every refusal is a problem document, and the service serves the next connection as before.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.audit.conftest import (
    INGEST_TOKEN,
    PROBLEM,
    AuditServer,
    new_database,
    start_audit,
    unique_source,
)
from tests.integration.audit.test_direct_ingest import Reader, connect, event_body, post

TARGETS = [pytest.param(b"/", id="direct"), pytest.param(b"/?via=asgi", id="asgi")]
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def token_audit(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuditServer]:
    """One audit service per module and database kind that wants the ingest token."""
    kind = str(request.param)
    directory: Path = tmp_path_factory.mktemp("audit-token")
    with new_database(kind, directory) as url, start_audit(url, kind, ingest_token=INGEST_TOKEN) as server:
        yield server


def head(target: bytes, *headers: bytes, length: int, version: bytes = b"1.1") -> bytes:
    """A ``POST`` request line and its headers, announcing a JSON CloudEvent of ``length`` bytes."""
    lines = [b"POST " + target + b" HTTP/" + version, b"Host: 127.0.0.1", *headers]
    lines += [b"Content-Type: application/cloudevents+json", b"Content-Length: %d" % length]
    return b"\r\n".join([*lines, b"", b""])


def chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


def assert_problem(answer: tuple[int, dict[str, str], bytes], status: int, *words: str) -> dict[str, Any]:
    """``answer`` is a problem document with ``status`` whose detail names the problem (``words``)."""
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"] == PROBLEM
    problem: dict[str, Any] = json.loads(body)
    assert problem["status"] == status
    assert problem["title"]
    assert problem["type"]
    for word in words:
        assert word in problem["detail"], problem
    return problem


def assert_closed(reader: Reader) -> None:
    """The server closed the connection after its answer (a read times out if it did not)."""
    reader.sock.settimeout(3)
    with contextlib.suppress(ConnectionResetError):  # closed, and bytes sent after the close were reset
        assert reader.closed(), reader.buffer


def assert_refused_and_closed(server: AuditServer, request: bytes, status: int, *words: str) -> None:
    """``request`` is answered ``status`` (a problem naming ``words``) with ``connection: close``, then closed."""
    with connect(server) as sock:
        sock.sendall(request)
        reader = Reader(sock)
        answer = reader.answer()
        assert_problem(answer, status, *words)
        assert answer[1]["connection"] == "close"
        assert_closed(reader)


def assert_still_serves(server: AuditServer, token: bytes | None = None) -> None:
    """A normal ``POST /`` on a new connection is stored."""
    extra = () if token is None else (b"Authorization: Bearer " + token,)
    with connect(server) as sock:
        sock.sendall(post(event_body(unique_source("still-serves")), *extra))
        status, _, body = Reader(sock).answer()
    assert status == 200, body


# --- 1. Expect: 100-continue answered on the headers alone ------------------------------------------

TOKEN = INGEST_TOKEN.encode()
REFUSED_ON_HEADERS = [
    pytest.param((b"Authorization: Bearer " + TOKEN,), 100_000, 413, "limit", id="413-declared-too-large"),
    pytest.param((b"Authorization: Bearer " + TOKEN, b"Content-Encoding: gzip"), 100, 415, "gzip", id="415-coding"),
    pytest.param((), 100, 401, "ingest", id="401-no-token"),
    pytest.param((b"Authorization: Bearer wrong-token-000000000",), 100, 401, "ingest", id="401-wrong-token"),
]


@pytest.mark.parametrize(("headers", "length", "status", "word"), REFUSED_ON_HEADERS)
@pytest.mark.parametrize("target", TARGETS)
def test_refusal_before_the_body_with_expect_closes(
    token_audit: AuditServer, target: bytes, headers: tuple[bytes, ...], length: int, status: int, word: str
) -> None:
    assert_refused_and_closed(token_audit, head(target, b"Expect: 100-continue", *headers, length=length), status, word)
    assert_still_serves(token_audit, TOKEN)


@pytest.mark.parametrize("target", TARGETS)
def test_next_request_after_a_refusal_with_expect_is_never_read_as_its_body(
    token_audit: AuditServer, target: bytes
) -> None:
    # The client got the 401, sends no body and reuses the connection (as it may, were it kept open):
    # the next request must not vanish into the 100 bytes announced. It is not answered at all.
    source = unique_source("swallowed")
    follow = post(event_body(source), b"Authorization: Bearer " + TOKEN, target=target)
    with connect(token_audit) as sock:
        sock.sendall(head(target, b"Expect: 100-continue", length=len(follow)))
        reader = Reader(sock)
        assert reader.answer()[0] == 401
        with contextlib.suppress(OSError):  # the server may have closed already: just as good
            sock.sendall(follow)
        assert_closed(reader)
    assert token_audit.page(source=source)["items"] == []


@pytest.mark.parametrize("target", TARGETS)
def test_expect_answered_after_the_body_keeps_the_connection(token_audit: AuditServer, target: bytes) -> None:
    # The 100 was sent and the body read: a refusal of the body (400) and a success both keep it open.
    auth = b"Authorization: Bearer " + TOKEN
    for body, status in ((b"{}", 400), (event_body(unique_source("expect-kept")), 200)):
        with connect(token_audit) as sock:
            reader = Reader(sock)
            for _ in range(2):
                sock.sendall(head(target, b"Expect: 100-continue", auth, length=len(body)))
                assert reader.answer()[0] == 100
                sock.sendall(body)
                answer = reader.answer()
                assert answer[0] == status, answer
                assert "connection" not in answer[1]
            sock.sendall(post(event_body(unique_source("expect-kept")), auth, target=target))
            assert reader.answer()[0] == 200


@pytest.mark.parametrize("target", TARGETS)
def test_refusal_of_a_request_whose_body_was_sent_keeps_the_connection(token_audit: AuditServer, target: bytes) -> None:
    # Without Expect, the client sends its body anyway: the server reads past it and serves the next request.
    auth = b"Authorization: Bearer " + TOKEN
    body = event_body(unique_source("refused-kept"))
    refused = head(target, auth, b"Content-Encoding: gzip", length=len(body)) + body
    with connect(token_audit) as sock:
        sock.sendall(refused + post(event_body(unique_source("refused-kept")), auth, target=target))
        reader = Reader(sock)
        first = reader.answer()
        assert_problem(first, 415, "gzip")
        assert "connection" not in first[1]
        assert reader.answer()[0] == 200


# --- 2. transfer codings other than chunked -------------------------------------------------------


@pytest.mark.parametrize(
    "codings",
    [
        pytest.param((b"gzip, chunked",), id="gzip-chunked"),
        pytest.param((b"deflate,chunked",), id="deflate-chunked"),
        pytest.param((b"gzip", b"chunked"), id="two-fields"),
        pytest.param((b"x-custom , CHUNKED",), id="unknown-coding"),
    ],
)
@pytest.mark.parametrize("target", TARGETS)
def test_transfer_coding_other_than_chunked_is_501(
    shared_audit: AuditServer, target: bytes, codings: tuple[bytes, ...]
) -> None:
    source = unique_source("transfer-coding")
    fields = [b"Transfer-Encoding: " + coding for coding in codings]
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/cloudevents+json"]
    request = b"\r\n".join([*lines, *fields, b"", b""]) + chunked(event_body(source))
    assert_refused_and_closed(shared_audit, request + post(event_body(source), target=target), 501, "Transfer-Encoding")
    assert shared_audit.page(source=source)["items"] == []
    assert_still_serves(shared_audit)


@pytest.mark.parametrize(
    ("coding", "words"),
    [
        pytest.param(b"gzip", ("Transfer-Encoding", "chunked"), id="gzip"),
        pytest.param(b"gzip, identity", ("Transfer-Encoding", "chunked"), id="no-chunked"),
        # llhttp refuses these itself, while it reads the header: the detail gives llhttp's reason.
        pytest.param(b"chunked, gzip", ("could not be parsed", "Invalid `Transfer-Encoding`"), id="chunked-not-last"),
        pytest.param(b"chunked, chunked", ("could not be parsed", "Invalid `Transfer-Encoding`"), id="chunked-twice"),
    ],
)
@pytest.mark.parametrize("target", TARGETS)
def test_transfer_coding_without_a_final_chunked_is_400(
    shared_audit: AuditServer, target: bytes, coding: bytes, words: tuple[str, ...]
) -> None:
    # RFC 9112 §6.3: with chunked not last, the body's length cannot be known: 400 and close (a MUST,
    # over §6.1's 501 for a coding not understood).
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/cloudevents+json"]
    request = b"\r\n".join([*lines, b"Transfer-Encoding: " + coding, b"", b""]) + chunked(b"{}")
    assert_refused_and_closed(shared_audit, request, 400, *words)
    assert_still_serves(shared_audit)


@pytest.mark.parametrize("coding", [b"chunked", b"Chunked", b" chunked "])
@pytest.mark.parametrize("target", TARGETS)
def test_chunked_alone_is_still_served(shared_audit: AuditServer, target: bytes, coding: bytes) -> None:
    source = unique_source("chunked")
    lines = [b"POST " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Content-Type: application/cloudevents+json"]
    request = b"\r\n".join([*lines, b"Transfer-Encoding:" + coding, b"", b""]) + chunked(event_body(source))
    with connect(shared_audit) as sock:
        sock.sendall(request * 2)
        reader = Reader(sock)
        assert [reader.answer()[0] for _ in range(2)] == [200, 200]
    assert len(shared_audit.page(source=source)["items"]) == 1


# --- 3. more than one Host -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "hosts",
    [
        pytest.param((b"Host: 127.0.0.1", b"Host: evil.example"), id="two-different"),
        pytest.param((b"Host: 127.0.0.1", b"host: 127.0.0.1"), id="two-same"),
        pytest.param((b"Host: 127.0.0.1", b"Host: a", b"Host: b"), id="three"),
    ],
)
@pytest.mark.parametrize("version", [b"1.1", b"1.0"])
@pytest.mark.parametrize("target", [*TARGETS, pytest.param(b"/healthz", id="get")])
def test_more_than_one_host_is_400(
    shared_audit: AuditServer, target: bytes, version: bytes, hosts: tuple[bytes, ...]
) -> None:
    source = unique_source("hosts")
    body = event_body(source)
    method = b"GET " if target == b"/healthz" else b"POST "
    lines = [method + target + b" HTTP/" + version, *hosts]
    lines += [b"Content-Type: application/cloudevents+json", b"Content-Length: %d" % len(body)]
    assert_refused_and_closed(shared_audit, b"\r\n".join([*lines, b"", b""]) + body, 400, "Host")
    assert shared_audit.page(source=source)["items"] == []
    assert_still_serves(shared_audit)


@pytest.mark.parametrize("target", TARGETS)
def test_two_hosts_behind_a_stored_request_are_refused_after_its_answer(
    shared_audit: AuditServer, target: bytes
) -> None:
    source = unique_source("hosts-pipelined")
    body = event_body(source)
    second = post(body, b"Host: evil.example", target=target)
    with connect(shared_audit) as sock:
        sock.sendall(post(body, target=target) + second)
        reader = Reader(sock)
        assert reader.answer()[0] == 200
        assert_problem(reader.answer(), 400, "Host")
        assert_closed(reader)
    assert len(shared_audit.page(source=source)["items"]) == 1


def test_missing_host_on_http_1_1_names_the_problem(shared_audit: AuditServer) -> None:
    with connect(shared_audit) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        reader = Reader(sock)
        assert_problem(reader.answer(), 400, "Host")
        assert_closed(reader)


def test_http_1_0_without_host_is_served(shared_audit: AuditServer) -> None:
    with connect(shared_audit) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert Reader(sock).answer()[0] == 200
