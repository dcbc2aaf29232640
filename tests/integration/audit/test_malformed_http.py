"""Malformed requests over real HTTP: each gets its own 4xx as ``application/problem+json``, never a 5xx.

Promise 5 of the design: no input, however malformed, crashes the service. The table covers
the ingest route (bad JSON, wrong types, invalid headers, media types, sizes), the read routes
(parameters, tokens), routing, and, through a raw socket, what the HTTP parser itself refuses
(CR/LF, oversized headers). After the table the service is still healthy and takes events.
"""

from __future__ import annotations

import base64
import json
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format
from tests.integration.audit.conftest import PROBLEM, READ_TOKEN, AuditServer, assert_problem, wait_until

SOURCE = "https://tests.example.com/malformed"
STRUCTURED = ("content-type", "application/cloudevents+json")
BATCH = ("content-type", "application/cloudevents-batch+json")
BINARY = (("ce-specversion", "1.0"), ("ce-id", "bin-1"), ("ce-source", SOURCE), ("ce-type", "t.bad"))
MAX_SEQ = 2**63 - 1

Errors = frozenset[tuple[str | None, int | None]]


def event(**changes: Any) -> dict[str, Any]:
    """A valid event as a JSON object, with ``changes`` (a value of ``...`` removes the member)."""
    obj: dict[str, Any] = {"specversion": "1.0", "id": "e-1", "source": SOURCE, "type": "t.bad"}
    for name, value in changes.items():
        if value is ...:
            obj.pop(name, None)
        else:
            obj[name] = value
    return obj


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


def cursor(after: Any, order: str = "asc") -> str:
    """A cursor like the service's own (base64 JSON), for the ones it never gave out."""
    return base64.urlsafe_b64encode(json.dumps({"after": after, "order": order}).encode()).decode().rstrip("=")


@dataclass(frozen=True)
class Bad:
    """One malformed request and the answer it must get."""

    status: int
    slug: str | None
    method: str = "POST"
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    errors: Errors | None = None  # (attribute, batch index) pairs the problem's ``errors`` must name
    token: str | None = READ_TOKEN  # sent on /v1 routes
    allow: str | None = None  # the Allow header a 405 must carry
    also: dict[str, Any] = field(default_factory=dict)  # members the problem must have


def structured(body: bytes, errors: Errors | None = None) -> Bad:
    return Bad(400, "invalid-event", headers=(STRUCTURED,), body=body, errors=errors)


def batch(body: bytes, errors: Errors | None = None) -> Bad:
    return Bad(400, "invalid-event", headers=(BATCH,), body=body, errors=errors)


def binary(*headers: tuple[str, str], body: bytes = b"", errors: Errors | None = None, drop: str = "") -> Bad:
    kept = tuple(h for h in BINARY if h[0] != drop)
    return Bad(400, "invalid-event", headers=kept + headers, body=body, errors=errors)


def read(path: str, parameter: str | None = None, token: str | None = READ_TOKEN) -> Bad:
    also = {"errors": [{"parameter": parameter}]} if parameter else {}
    return Bad(400, "invalid-parameter", method="GET", path=path, token=token, also=also)


def one(attribute: str | None, index: int | None = None) -> Errors:
    return frozenset({(attribute, index)})


TABLE: dict[str, Bad] = {
    # --- structured mode: JSON and the JSON event format ---
    "json-truncated": structured(b'{"specversion": "1.0", "id": ', one(None)),
    "json-empty-body": structured(b"", one(None)),
    "json-trailing-garbage": structured(dumps(event()) + b"}", one(None)),
    "json-not-utf8": structured(b'{"specversion": "1.0", "id": "\xff\xfe"}', one(None)),
    "json-array-not-object": structured(b"[]"),
    "json-string-not-object": structured(b'"an event"'),
    "json-duplicate-member": structured(b'{"specversion":"1.0","id":"a","id":"b","source":"/s","type":"t"}'),
    "json-nested-too-deep": structured(dumps(event())[:-1] + b', "data": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    "json-number-out-of-range": structured(dumps(event())[:-1] + b', "data": 1e400}'),
    "specversion-number": structured(dumps(event(specversion=1.0)), one("specversion")),
    "specversion-unknown": structured(dumps(event(specversion="0.3")), one("specversion")),
    "id-missing": structured(dumps(event(id=...)), one("id")),
    "id-number": structured(dumps(event(id=25)), one("id")),
    "id-empty": structured(dumps(event(id="")), one("id")),
    "source-not-uri-reference": structured(dumps(event(source="not a uri")), one("source")),
    "source-object": structured(dumps(event(source={"uri": "/s"})), one("source")),
    "type-empty": structured(dumps(event(type="")), one("type")),
    "type-control-character": structured(dumps(event(type="t\u0007bell")), one("type")),
    "time-garbage": structured(dumps(event(time="lunchtime")), one("time")),
    "time-no-seconds": structured(dumps(event(time="2026-11-27T10:00Z")), one("time")),
    "time-february-30": structured(dumps(event(time="2024-02-30T00:00:00Z")), one("time")),
    "datacontenttype-not-media-type": structured(dumps(event(datacontenttype="json")), one("datacontenttype")),
    "dataschema-relative": structured(dumps(event(dataschema="schema.json")), one("dataschema")),
    "subject-empty": structured(dumps(event(subject="")), one("subject")),
    "extension-name-uppercase": structured(dumps(event(MyExt="x")), one("MyExt")),
    "extension-float": structured(dumps(event(ratio=1.5)), one("ratio")),
    "extension-object": structured(dumps(event(nested={"a": 1})), one("nested")),
    "extension-integer-overflow": structured(dumps(event(big=2**31)), one("big")),
    "data-and-data-base64": structured(dumps(event(data="x", data_base64="eA==")), None),
    "data-base64-not-base64": structured(dumps(event(data_base64="not base64!")), one("data_base64")),
    "format-xml": Bad(
        415, "unsupported-media-type", headers=(("content-type", "application/cloudevents+xml"),), body=b"<e/>"
    ),
    # --- batched mode ---
    "batch-object-not-array": batch(dumps(event())),
    "batch-truncated": batch(b"[" + dumps(event()), one(None)),
    "batch-member-not-object": batch(dumps([event(id="b-0"), "event"]), one(None, 1)),
    "batch-member-invalid": batch(dumps([event(id=f"b-{i}") for i in range(3)] + [event(id=...)]), one("id", 3)),
    "batch-two-members-invalid": batch(
        dumps([event(type=""), event(id="b-1"), event(id="b-2", time="soon")]), frozenset({("type", 0), ("time", 2)})
    ),
    "batch-mixed-specversions": batch(dumps([event(id="m-0"), event(id="m-1", specversion="0.3")]), None),
    # --- binary mode: ce- headers ---
    "binary-no-specversion": binary(drop="ce-specversion", errors=one("specversion")),
    "binary-no-id": binary(drop="ce-id", errors=one("id")),
    "binary-no-source": binary(drop="ce-source", errors=one("source")),
    "binary-specversion-2": binary(("ce-specversion", "2.0"), drop="ce-specversion", errors=one("specversion")),
    "binary-id-twice": binary(("ce-id", "bin-2"), errors=one("id")),
    "binary-datacontenttype-header": binary(("ce-datacontenttype", "text/plain"), errors=one("datacontenttype")),
    "binary-bad-percent-escape": binary(("ce-subject", "100%zz"), errors=one("subject")),
    "binary-percent-not-utf8": binary(("ce-subject", "caf%E9"), errors=one("subject")),
    "binary-percent-encoded-crlf": binary(("ce-subject", "a%0D%0Ab"), errors=one("subject")),
    "binary-time-garbage": binary(("ce-time", "yesterday"), errors=one("time")),
    "binary-extension-name-punctuated": binary(("ce-my_ext", "x"), errors=one("my_ext")),
    "binary-json-body-not-json": binary(("content-type", "application/json"), body=b"{nope", errors=one("data")),
    # --- media types, encodings, sizes ---
    "no-cloudevent-text": Bad(415, "unsupported-media-type", headers=(("content-type", "text/plain"),), body=b"hi"),
    "no-cloudevent-json": Bad(
        415, "unsupported-media-type", headers=(("content-type", "application/json"),), body=dumps(event())
    ),
    "no-content-type-no-headers": Bad(415, "unsupported-media-type", body=dumps(event())),
    "format-protobuf": Bad(
        415, "unsupported-media-type", headers=(("content-type", "application/cloudevents+protobuf"),), body=b"\x0a"
    ),
    "content-encoding-gzip": Bad(
        415, "unsupported-media-type", headers=(STRUCTURED, ("content-encoding", "gzip")), body=b"\x1f\x8b"
    ),
    "body-over-limit": Bad(413, "too-large", headers=(STRUCTURED,), body=b" " * (64 * 1024 + 1)),
    # --- routes and methods ---
    "unknown-route": Bad(404, None, method="GET", path="/nope"),
    "unknown-v1-route": Bad(404, None, method="GET", path="/v1/users"),
    "post-to-a-read-route": Bad(405, None, path="/v1/events", headers=(STRUCTURED,), body=dumps(event()), allow="GET"),
    "put-ingest": Bad(
        405, None, method="PUT", path="/", headers=(STRUCTURED,), body=dumps(event()), allow="POST, OPTIONS"
    ),
    "get-ingest": Bad(405, None, method="GET", path="/", allow="POST, OPTIONS"),
    "delete-stream": Bad(405, None, method="DELETE", path="/v1/events/stream", allow="GET"),
    "webhook-empty-origin": Bad(400, "bad-request", method="OPTIONS", headers=(("WebHook-Request-Origin", ""),)),
    # --- read parameters ---
    "limit-zero": read("/v1/events?limit=0", "limit"),
    "limit-over-1000": read("/v1/events?limit=1001", "limit"),
    "limit-not-a-number": read("/v1/events?limit=ten", "limit"),
    "order-sideways": read("/v1/events?order=sideways", "order"),
    "cursor-garbage": read("/v1/events?cursor=zz"),
    "cursor-not-json": read(f"/v1/events?cursor={base64.urlsafe_b64encode(b'{after').decode()}"),
    "cursor-negative": read(f"/v1/events?cursor={cursor(-1)}"),
    "cursor-over-bigint": read(f"/v1/events?cursor={cursor(MAX_SEQ + 1)}"),
    "cursor-other-order": read(f"/v1/events?order=desc&cursor={cursor(5, 'asc')}"),
    "cursor-too-long": read(f"/v1/events?cursor={'A' * 201}", "cursor"),
    "since-garbage": read("/v1/events?since=last%20week"),
    "since-month-13": read("/v1/events?since=2026-13-01T00:00:00Z"),
    "until-date-only": read("/v1/events?until=2026-11-27"),
    "on-unknown-field": read("/v1/events?on=arrival", "on"),
    "source-nul": read("/v1/events?source=%00"),
    "filter-type-control-character": read("/v1/events?type=user.%1B*"),
    "id-too-long": read(f"/v1/events?id={'x' * 513}", "id"),
    "stats-bucket-week": read("/v1/stats?bucket=week", "bucket"),
    "stats-by-subject": read("/v1/stats?by=subject", "by"),
    "stats-since-garbage": read("/v1/stats?since=now"),
    "export-format-xml": read("/v1/events/export?format=xml", "format"),
    "export-id-nul": read("/v1/events/export?id=a%00b"),
    "stream-after-negative": read("/v1/events/stream?after=-1", "after"),
    "stream-after-over-bigint": read(f"/v1/events/stream?after={MAX_SEQ + 1}", "after"),
    "stream-since-garbage": read("/v1/events/stream?since=soon"),
    # --- read tokens ---
    "read-token-missing": Bad(401, "unauthorized", method="GET", path="/v1/events", token=None),
    "read-token-wrong": Bad(401, "unauthorized", method="GET", path="/v1/events", token="read-token-for-tests-9999"),
    "read-token-missing-stats": Bad(401, "unauthorized", method="GET", path="/v1/stats", token=None),
    "read-token-missing-export": Bad(401, "unauthorized", method="GET", path="/v1/events/export", token=None),
    "read-token-missing-stream": Bad(401, "unauthorized", method="GET", path="/v1/events/stream", token=None),
    "read-token-before-parameters": Bad(401, "unauthorized", method="GET", path="/v1/events?limit=0", token=None),
}


def request(server: AuditServer, bad: Bad) -> httpx.Response:
    headers = list(bad.headers)
    if bad.path.startswith("/v1") and bad.token is not None:
        headers.append(("authorization", f"Bearer {bad.token}"))
    return server.client.request(bad.method, bad.path, headers=headers, content=bad.body or None)


@pytest.mark.parametrize("name", list(TABLE))
def test_malformed_request(shared_audit: AuditServer, name: str) -> None:
    bad = TABLE[name]
    response = request(shared_audit, bad)
    problem = assert_problem(response, bad.status, bad.slug)
    if bad.slug is None:
        assert problem["type"] == "about:blank"
    for member, value in bad.also.items():
        if member == "errors":
            assert [{"parameter": e["parameter"]} for e in problem["errors"]] == value, problem
    if bad.slug == "invalid-event":
        errors = problem["errors"]
        assert errors, problem
        for error in errors:
            assert set(error) == {"attribute", "rule", "section", "index"}
            assert error["rule"]
            assert error["section"]
        if bad.errors is not None:
            assert {(e["attribute"], e["index"]) for e in errors} == bad.errors, problem
    if bad.status == 401:
        assert response.headers["www-authenticate"].startswith("Bearer")
    if bad.status == 405:
        assert response.headers["allow"] == bad.allow


# --- what the HTTP parser refuses, sent byte for byte ---------------------------------------------


def raw_exchange(server: AuditServer, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a fresh connection and read until the server closes it: status, headers, body."""
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, separator, body = received.partition(b"\r\n\r\n")
    assert separator, f"no complete answer: {received!r}"
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    if headers.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    elif "content-length" in headers:
        assert len(body) == int(headers["content-length"])
    # else the body ends where the server closed the connection (RFC 9112 §6.3)
    return int(status_line.split(" ")[1]), headers, body


def dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return out
        out, body = out + rest[:size], rest[size + 2 :]


def raw_request(*header_lines: bytes, request_line: bytes = b"GET /healthz HTTP/1.1", body: bytes = b"") -> bytes:
    """A request, byte for byte; ``Connection: close`` so that even an answer of 200 ends the exchange."""
    return b"\r\n".join([request_line, b"Host: 127.0.0.1", b"Connection: close", *header_lines, b"", b""]) + body


RAW: dict[str, tuple[bytes, int]] = {
    "bare-cr-in-header-value": (raw_request(b"X-Note: a\rb"), 400),
    "lf-in-header-value": (raw_request(b"X-Note: a\nb"), 400),
    "cr-in-ce-header": (raw_request(b"ce-subject: users/1\rce-id: x", request_line=b"POST / HTTP/1.1"), 400),
    "nul-in-header-value": (raw_request(b"X-Note: a\x00b"), 400),
    "space-in-header-name": (raw_request(b"X Note: a"), 400),
    "oversized-header": (raw_request(b"X-Padding: " + b"a" * 20_000), 431),
    "oversized-many-headers": (raw_request(*(b"X-H%d: %s" % (i, b"v" * 100) for i in range(200))), 431),
    "request-line-garbage": (b"GARBAGE\r\n\r\n", 400),
    "target-not-ascii": (raw_request(request_line=b"GET /\xff HTTP/1.1"), 400),
    "no-host": (b"GET /healthz HTTP/1.1\r\n\r\n", 400),
    "content-length-not-a-number": (raw_request(b"Content-Length: ten", request_line=b"POST / HTTP/1.1"), 400),
    "content-length-twice": (
        raw_request(b"Content-Length: 3", b"Content-Length: 4", request_line=b"POST / HTTP/1.1", body=b"abcd"),
        400,
    ),
    "content-length-and-chunked": (
        raw_request(
            b"Content-Length: 5",
            b"Transfer-Encoding: chunked",
            b"Content-Type: application/cloudevents+json",
            request_line=b"POST / HTTP/1.1",
            body=b"0\r\n\r\n",
        ),
        400,
    ),
    "transfer-encoding-gzip": (raw_request(b"Transfer-Encoding: gzip", request_line=b"POST / HTTP/1.1"), 400),
    "chunk-size-not-hex": (
        raw_request(
            b"Transfer-Encoding: chunked",
            b"Content-Type: application/cloudevents+json",
            request_line=b"POST / HTTP/1.1",
            body=b"zz\r\n{}\r\n0\r\n\r\n",
        ),
        400,
    ),
}


# The parser's own reason, in the detail (llhttp's fixed phrases; never bytes of the request).
LLHTTP_REASONS = {
    "bare-cr-in-header-value": "Missing expected LF after header value",
    "nul-in-header-value": "Invalid header value char",
    "space-in-header-name": "Invalid header token",
    "request-line-garbage": "Invalid method encountered",
    "target-not-ascii": "Invalid char in url path",
    "content-length-twice": "Duplicate Content-Length",
    "content-length-and-chunked": "Transfer-Encoding can't be present with Content-Length",
    "chunk-size-not-hex": "Invalid character in chunk size",
}


@pytest.mark.parametrize("name", list(RAW))
def test_malformed_http_message(shared_audit: AuditServer, name: str) -> None:
    data, expected = RAW[name]
    status, headers, body = raw_exchange(shared_audit, data)
    assert status == expected, body
    assert headers["content-type"] == PROBLEM
    problem = json.loads(body)
    assert problem["status"] == expected
    assert problem["title"]
    assert problem["type"] == "about:blank"
    assert problem["detail"]
    if name in LLHTTP_REASONS:
        assert problem["detail"] == f"the HTTP request could not be parsed: {LLHTTP_REASONS[name]}"
    assert b"X-Padding" not in body


def test_header_just_under_the_limit_is_served(shared_audit: AuditServer) -> None:
    """The 431 above is about size, not about an X-Padding header: 12 KiB of it is fine."""
    status, _, body = raw_exchange(shared_audit, raw_request(b"X-Padding: " + b"a" * 12_000))
    assert status == 200, body


def test_encoded_line_break_in_the_path_stays_in_its_log_line(
    shared_audit: AuditServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="eventaudit.access")
    assert shared_audit.client.get("/forged%0A2026-01-01%20INFO%20fake").status_code == 404
    record = wait_until(
        lambda: next((r for r in caplog.records if r.name == "eventaudit.access" and "forged" in r.getMessage()), None),
        what="the access log line",
    )
    assert "\n" not in record.getMessage()
    assert record.getMessage().startswith("GET /forged\\n2026-01-01 INFO fake 404")


# --- and afterwards all is well -------------------------------------------------------------------


def test_service_still_healthy_and_taking_events(shared_audit: AuditServer) -> None:
    """Runs after the tables (pytest keeps file order within each database)."""
    assert shared_audit.client.get("/healthz").json() == {"status": "ok"}
    assert shared_audit.client.get("/readyz").status_code == 200
    assert shared_audit.page(source=SOURCE)["items"] == []  # nothing malformed was stored
    good = CloudEvent.create(type="t.good", source=SOURCE, data={"ok": True})
    response = shared_audit.client.post("/", headers=dict([STRUCTURED]), content=json_format.encode(good))
    assert response.status_code == 200, response.text
    (item,) = shared_audit.page(source=SOURCE)["items"]
    assert item["event"]["id"] == good.id
    assert shared_audit.metric("eventaudit_rejected_requests_total", reason="invalid_event") >= 40
