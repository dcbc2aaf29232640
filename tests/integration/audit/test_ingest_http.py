"""``POST /`` and ``OPTIONS /`` of the audit service over real HTTP, on SQLite and PostgreSQL.

Every conformance case goes over the wire; so do events the official Python and JavaScript
SDKs encode. A 2xx means stored: the query right after it finds the event.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format
from tests.conftest import require
from tests.integration.audit.conftest import (
    INGEST_TOKEN,
    READ_TOKEN,
    AuditServer,
    assert_problem,
    kind_of,
    start_audit,
    unique_source,
    wait_until,
)
from tests.integration.conftest import PG_ADMIN
from tests.interop.compare import view, view_of
from tests.unit.events.test_conformance import (
    HTTP_CASES,
    INVALID_BATCH_CASES,
    INVALID_BATCH_INDEX,
    INVALID_EVENT_ATTRIBUTE,
    INVALID_EVENT_CASES,
    VALID_BATCH_CASES,
    VALID_EVENT_CASES,
    YAML_CASES,
    _http_scenario,
    _unwrap,
)

JS_DIR = Path(__file__).resolve().parents[2] / "interop" / "js"
HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}


def stored_event(item: dict[str, Any]) -> CloudEvent:
    """The event of a read item, decoded with our JSON event format."""
    return json_format.decode(json.dumps(item["event"]).encode())


def only_item(server: AuditServer, event: CloudEvent) -> dict[str, Any]:
    """The one stored item with ``event``'s (source, id)."""
    items = server.page(source=event.source, id=event.id)["items"]
    assert len(items) == 1, items
    return items[0]


def sample_events(source: str) -> list[CloudEvent]:
    return [
        CloudEvent.create(type="com.example.json", source=source, subject="users/1", data={"name": "Zoë", "n": [1, 2]}),
        CloudEvent.create(type="com.example.text", source=source, data="hello, wörld\nline 2"),
        CloudEvent.create(type="com.example.bytes", source=source, data=bytes(range(256))),
        CloudEvent.create(
            type="com.example.ext",
            source=source,
            time="2024-02-29T23:59:59.123456789+05:30",
            extensions={"partitionkey": "user-42", "count": 7, "on": True},
        ),
    ]


# --- the three content modes --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_single_event_is_stored_before_the_2xx(shared_audit: AuditServer, mode: str) -> None:
    for event in sample_events(unique_source(mode)):
        response = shared_audit.send(event, mode=mode)
        assert response.status_code == 200, response.text
        assert response.json()["stored"] == 1
        (seq,) = response.json()["seqs"]
        item = only_item(shared_audit, event)  # right after the 2xx, no waiting
        assert item["seq"] == seq
        if mode == "structured":
            assert stored_event(item) == event
        else:  # HTTP §3.1.3: a header carries an extension's canonical string, not its type
            assert view_of(stored_event(item), as_strings=True) == view_of(event, as_strings=True)


def test_binary_event_keeps_typed_values_as_strings(shared_audit: AuditServer) -> None:
    """HTTP §3.1.3: in headers every value is its canonical string; data and core attributes are exact."""
    event = sample_events(unique_source("typed"))[3]
    shared_audit.stored(event, mode="binary")
    stored = stored_event(only_item(shared_audit, event))
    assert dict(stored.extensions) == {"partitionkey": "user-42", "count": "7", "on": "true"}
    assert (stored.time, stored.type, stored.source) == (event.time, event.type, event.source)


def test_batch_is_stored_in_order_before_the_2xx(shared_audit: AuditServer) -> None:
    source = unique_source("batch")
    events = sample_events(source)
    seqs = shared_audit.stored(*events, mode="batch")
    assert len(seqs) == len(events)
    assert all(seq is not None for seq in seqs)
    assert seqs == sorted(seqs)
    items = shared_audit.page(source=source)["items"]
    assert [item["seq"] for item in items] == seqs
    assert [stored_event(item) for item in items] == events


def test_empty_batch_stores_nothing(shared_audit: AuditServer) -> None:
    response = shared_audit.post(BATCH, b"[]")
    assert response.status_code == 200
    assert response.json() == {"stored": 0, "duplicates": 0, "seqs": []}


# --- duplicates and all-or-nothing batches --------------------------------------------------------


def test_duplicate_is_2xx_stored_once_and_counted(shared_audit: AuditServer) -> None:
    source = unique_source("dup")
    event, other = sample_events(source)[:2]
    before = shared_audit.metric("eventaudit_duplicate_events_total", transport="http")
    (first,) = shared_audit.stored(event, mode="structured")
    assert first is not None
    assert shared_audit.stored(event, mode="binary") == [None]  # same (source, id), other content mode
    assert shared_audit.stored(other, event, other, mode="batch")[1:] == [None, None]
    items = shared_audit.page(source=source)["items"]
    assert [(item["event"]["id"], item["seq"]) for item in items] == [(event.id, first), (other.id, first + 1)]
    assert shared_audit.metric("eventaudit_duplicate_events_total", transport="http") == before + 3


def test_same_id_from_another_source_is_not_a_duplicate(shared_audit: AuditServer) -> None:
    one, two = unique_source("a"), unique_source("b")
    seqs = [shared_audit.stored(CloudEvent.create(type="t.t", source=s, id="same-id"))[0] for s in (one, two)]
    assert None not in seqs
    assert len(shared_audit.page(id="same-id", source=one)["items"]) == 1
    assert len(shared_audit.page(id="same-id", source=two)["items"]) == 1


def test_batch_with_one_invalid_member_stores_nothing(shared_audit: AuditServer) -> None:
    source = unique_source("all-or-nothing")
    members = [json_format.to_dict(e) for e in sample_events(source)]
    del members[2]["type"]
    response = shared_audit.post(BATCH, json.dumps(members).encode())
    problem = assert_problem(response, 400, "invalid-event")
    assert {(e["index"], e["attribute"]) for e in problem["errors"]} == {(2, "type")}
    assert "[2]" in problem["detail"]
    assert shared_audit.page(source=source)["items"] == []
    assert shared_audit.metric("eventaudit_rejected_requests_total", reason="invalid_event") >= 1


# --- the ingest token -----------------------------------------------------------------------------


def test_ingest_token_is_required_when_configured(db_url: str) -> None:
    source = unique_source("token")
    with start_audit(db_url, kind_of(db_url), ingest_token=INGEST_TOKEN) as server:
        refused = {
            "missing": {},
            "wrong": {"authorization": "Bearer ingest-token-for-tests-002"},
            "prefix": {"authorization": f"Bearer {INGEST_TOKEN[:-1]}"},
            "longer": {"authorization": f"Bearer {INGEST_TOKEN}x"},
            "read token": {"authorization": f"Bearer {READ_TOKEN}"},
            "basic": {"authorization": "Basic " + base64.b64encode(f"x:{INGEST_TOKEN}".encode()).decode()},
            "no scheme": {"authorization": INGEST_TOKEN},
        }
        for name, auth in refused.items():
            event = CloudEvent.create(type="t.refused", source=source, id=name)
            response = server.client.post("/", headers={**STRUCTURED, **auth}, content=json_format.encode(event))
            assert_problem(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer"), name
            assert INGEST_TOKEN not in response.text
        accepted = CloudEvent.create(type="t.accepted", source=source)
        response = server.client.post(
            "/",
            headers={**STRUCTURED, "authorization": f"bearer  {INGEST_TOKEN}"},
            content=json_format.encode(accepted),
        )
        assert response.status_code == 200, response.text
        assert [stored_event(i) for i in server.page(source=source)["items"]] == [accepted]


# --- the webhook handshake ------------------------------------------------------------------------


def test_webhook_handshake_with_any_origin_allowed(shared_audit: AuditServer) -> None:
    response = shared_audit.client.options("/", headers={"WebHook-Request-Origin": "eventemitter.example.com"})
    assert response.status_code == 200
    assert response.headers["webhook-allowed-origin"] == "eventemitter.example.com"
    assert response.headers["webhook-allowed-rate"] == "*"
    assert "POST" in response.headers["allow"]


def test_webhook_handshake_refuses_an_origin_not_allowed(tmp_path: Path) -> None:
    with start_audit(
        f"sqlite:///{tmp_path / 'hooks.db'}", "sqlite", allowed_origins=("Sender.Example.com",), allowed_rate=120
    ) as server:
        allowed = server.client.options("/", headers={"WebHook-Request-Origin": "sender.example.com"})
        assert allowed.status_code == 200
        assert allowed.headers["webhook-allowed-origin"] == "sender.example.com"
        assert allowed.headers["webhook-allowed-rate"] == "120"
        refused = server.client.options("/", headers={"WebHook-Request-Origin": "evil.example.com"})
        assert_problem(refused, 403, "origin-not-allowed")
        assert "webhook-allowed-origin" not in refused.headers
        assert "evil.example.com" in refused.json()["detail"]
        plain = server.client.options("/")
        assert plain.status_code == 204
        assert "webhook-allowed-origin" not in plain.headers


# --- size limit -----------------------------------------------------------------------------------


def padded(source: str, size: int) -> bytes:
    """A valid structured event of exactly ``size`` bytes."""
    event = CloudEvent.create(type="t.big", source=source, data="")
    body = json_format.encode(event)
    return json_format.encode(
        CloudEvent.create(type="t.big", source=source, id=event.id, data="x" * (size - len(body)))
    )


def test_body_at_the_limit_is_taken(shared_audit: AuditServer) -> None:
    source = unique_source("limit")
    body = padded(source, shared_audit.settings.max_body)
    assert len(body) == shared_audit.settings.max_body
    assert shared_audit.post(STRUCTURED, body).status_code == 200
    assert len(shared_audit.page(source=source)["items"]) == 1


def test_body_over_the_limit_with_content_length_is_413(shared_audit: AuditServer) -> None:
    source = unique_source("too-large")
    limit = shared_audit.settings.max_body
    response = shared_audit.post(STRUCTURED, padded(source, limit + 1))
    assert response.request.headers["content-length"] == str(limit + 1)
    problem = assert_problem(response, 413, "too-large")
    assert problem["limit"] == limit
    assert shared_audit.page(source=source)["items"] == []


def test_chunked_body_over_the_limit_without_content_length_is_413(shared_audit: AuditServer) -> None:
    source = unique_source("too-large-chunked")
    body = padded(source, shared_audit.settings.max_body + 4096)
    chunks = (body[i : i + 4096] for i in range(0, len(body), 4096))
    response = shared_audit.post(STRUCTURED, chunks)  # type: ignore[arg-type]
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_problem(response, 413, "too-large")
    assert shared_audit.page(source=source)["items"] == []


def test_chunked_body_under_the_limit_is_taken(shared_audit: AuditServer) -> None:
    source = unique_source("chunked")
    body = padded(source, 10_000)
    response = shared_audit.post(STRUCTURED, (body[i : i + 999] for i in range(0, len(body), 999)))  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert len(shared_audit.page(source=source)["items"]) == 1


# --- every conformance case over the wire ---------------------------------------------------------


def decoded_json_of(event: CloudEvent) -> dict[str, Any]:
    """The event as the JSON format writes it, nulls dropped: what a vector should come back as."""
    return json.loads(json_format.encode(event))


@pytest.mark.parametrize("case", VALID_EVENT_CASES)
def test_conformance_valid_event(shared_audit: AuditServer, case: Any) -> None:
    case = _unwrap(case)
    response = shared_audit.post(STRUCTURED, json.dumps(case["event"]).encode())
    assert response.status_code == 200, response.text
    (seq,) = response.json()["seqs"]
    sent = json_format.decode(json.dumps(case["event"]).encode())
    item = only_item(shared_audit, sent)  # a vector shares (source, id) with others: stored once
    if seq is not None:
        assert item["seq"] == seq
        assert stored_event(item) == sent
        assert item["event"] == decoded_json_of(sent)


@pytest.mark.parametrize("case", INVALID_EVENT_CASES)
def test_conformance_invalid_event(shared_audit: AuditServer, case: Any) -> None:
    case = _unwrap(case)
    count = shared_audit.metric("eventaudit_ingested_events_total", transport="http")
    response = shared_audit.post(STRUCTURED, json.dumps(case["event"]).encode())
    problem = assert_problem(response, 400, "invalid-event")
    named = {error["attribute"] for error in problem["errors"]}
    assert named, problem
    assert named <= INVALID_EVENT_ATTRIBUTE[case["id"]], problem
    assert all(error["rule"] and error["section"] and error["index"] is None for error in problem["errors"])
    assert shared_audit.metric("eventaudit_ingested_events_total", transport="http") == count


@pytest.mark.parametrize("case", VALID_BATCH_CASES)
def test_conformance_valid_batch(shared_audit: AuditServer, case: Any) -> None:
    case = _unwrap(case)
    response = shared_audit.post(BATCH, json.dumps(case["batch"]).encode())
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["seqs"]) == len(case["batch"]) == body["stored"] + body["duplicates"]
    for member in case["batch"]:
        only_item(shared_audit, json_format.decode(json.dumps(member).encode()))


@pytest.mark.parametrize("case", INVALID_BATCH_CASES)
def test_conformance_invalid_batch(shared_audit: AuditServer, case: Any) -> None:
    case = _unwrap(case)
    count = shared_audit.metric("eventaudit_ingested_events_total", transport="http")
    response = shared_audit.post(BATCH, json.dumps(case["batch"]).encode())
    problem = assert_problem(response, 400, "invalid-event")
    assert {error["index"] for error in problem["errors"]} == {INVALID_BATCH_INDEX[case["id"]]}
    assert shared_audit.metric("eventaudit_ingested_events_total", transport="http") == count


@pytest.mark.parametrize("scenario", HTTP_CASES)
def test_conformance_http_feature(shared_audit: AuditServer, scenario: Any) -> None:
    scenario = _unwrap(scenario)
    headers, body, expect = _http_scenario(scenario)
    sent = [(name, value) for name, value in headers if name.lower() not in ("host", "content-length")]
    response = shared_audit.client.post("/", headers=sent, content=body)
    assert response.status_code == 200, response.text
    items = shared_audit.page(source=expect.attributes["source"], id=expect.attributes["id"])["items"]
    assert len(items) == 1
    if response.json()["seqs"] != [None]:
        stored = stored_event(items[0])
        assert {k: str(v) for k, v in stored.attributes().items()} == expect.attributes
        assert stored.data == expect.data


@pytest.mark.parametrize("doc", YAML_CASES)
def test_conformance_yaml_event_in_binary_mode(shared_audit: AuditServer, doc: Any) -> None:
    doc = _unwrap(doc)
    attributes = {name: str(value) for name, value in doc["ContextAttributes"].items()}
    content_type = attributes.pop("datacontenttype")
    headers = {"content-type": content_type}
    for name, value in attributes.items():  # HTTP §3.1.3.2: percent-encode what a header cannot hold
        headers[f"ce-{name}"] = quote(value, safe=HEADER_SAFE)
    response = shared_audit.post(headers, doc["Data"].encode())
    assert response.status_code == 200, response.text
    items = shared_audit.page(source=attributes["source"], id=attributes["id"])["items"]
    assert len(items) == 1
    stored = stored_event(items[0])
    assert stored.attributes() == {**attributes, "datacontenttype": content_type}
    expected = json.loads(doc["Data"]) if "json" in content_type else doc["Data"]
    assert stored.data == expected


# --- the official SDKs ----------------------------------------------------------------------------

IST = timezone(timedelta(hours=5, minutes=30))
SDK_FORMAT = JSONFormat()


def sdk_events(source: str) -> list[SdkEvent]:
    return [
        SdkEvent(
            {"type": "com.example.json", "source": source, "datacontenttype": "application/json"},
            {"user": {"id": 7, "name": "Zoë"}, "tags": ["a"], "ok": True, "score": 1.5, "none": None},
        ),
        SdkEvent(
            {"type": "com.example.text", "source": source, "datacontenttype": "text/plain; charset=utf-8"}, "hé\nx"
        ),
        SdkEvent(
            {"type": "com.example.bytes", "source": source, "datacontenttype": "application/octet-stream"},
            bytes(range(256)),
        ),
        SdkEvent(
            {
                "type": "com.example.context",
                "source": source,
                "subject": 'users/42 — Zoë 100% "quoted"',
                "dataschema": "https://example.com/schemas/user-v1.json",
                "time": datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=IST),
                "partitionkey": "user-42",
                "count": 42,
            },
            None,
        ),
    ]


@pytest.mark.interop
@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_python_sdk_events_are_stored(shared_audit: AuditServer, mode: str) -> None:
    source = unique_source(f"python-sdk-{mode}")
    encode = sdk_http.to_binary if mode == "binary" else sdk_http.to_structured
    sent = sdk_events(source)
    for event in sent:
        message = encode(event, SDK_FORMAT)
        response = httpx.post(shared_audit.url + "/", headers=message.headers, content=message.body)
        assert response.status_code == 200, response.text
    items = shared_audit.page(source=source)["items"]
    assert [view_of(stored_event(i), as_strings=mode == "binary") for i in items] == [
        view(e.get_attributes(), e.get_data(), as_strings=mode == "binary") for e in sent
    ]


JS_CASES: dict[str, dict[str, Any]] = {
    "json": {"datacontenttype": "application/json", "data": {"kind": "json", "value": {"a": [1, "b"], "n": None}}},
    "text": {"datacontenttype": "text/plain; charset=utf-8", "data": {"kind": "text", "value": "hé\nx"}},
    "bytes": {
        "datacontenttype": "application/octet-stream",
        "data": {"kind": "bytes", "value": base64.b64encode(bytes(range(256))).decode()},
    },
    "extensions": {
        "datacontenttype": "application/json",
        "subject": "users/42",
        "partitionkey": "user-42",
        "count": 42,
        "data": {"kind": "json", "value": {"k": "v"}},
    },
}
JS_MODES = ["binary", "structured", "batch"]


def js_event(source: str, case: str) -> dict[str, Any]:
    """A command event for ce.mjs: {"attributes", "data"}."""
    attributes = {k: v for k, v in JS_CASES[case].items() if k != "data"}
    return {
        "attributes": {"type": f"com.example.js.{case}", "source": source, **attributes},
        "data": JS_CASES[case]["data"],
    }


@pytest.fixture(scope="module")
def js_messages() -> dict[tuple[str, str], dict[str, Any]]:
    """What the JavaScript SDK puts on the wire for each (mode, case), from one ``node`` run."""
    node = shutil.which("node")
    require(node is not None, "node is not on PATH; `make test` installs the JavaScript SDK")
    require((JS_DIR / "node_modules" / "cloudevents").is_dir(), "no tests/interop/js/node_modules; run `make test`")
    keys = [(mode, case) for mode in ("binary", "structured") for case in JS_CASES] + [("batch", "all")]
    commands = []
    for mode, case in keys:
        source = unique_source(f"js-{mode}-{case}")
        cases = list(JS_CASES) if case == "all" else [case]
        events = [js_event(source, c) for c in cases]
        commands.append({"op": "encode", "binding": "http", "mode": mode, "events": events})
    assert node is not None
    done = subprocess.run(
        [node, "ce.mjs"], cwd=JS_DIR, input=json.dumps(commands), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return dict(zip(keys, json.loads(done.stdout), strict=True))


def js_view(event: dict[str, Any], *, as_strings: bool) -> dict[str, Any]:
    data = event["data"]
    value = base64.b64decode(data["base64"]) if data["kind"] == "bytes" else data.get("value")
    return view(event["attributes"], value, as_strings=as_strings, milliseconds=True)


@pytest.mark.interop
@pytest.mark.parametrize("mode", JS_MODES)
def test_js_sdk_events_are_stored(shared_audit: AuditServer, js_messages: dict[Any, dict[str, Any]], mode: str) -> None:
    messages = [m for (m_mode, _), m in js_messages.items() if m_mode == mode]
    for message in messages:
        assert message["ok"], message
        assert message["wire_error"] is None
        body = base64.b64decode(message["body_base64"] or "")
        response = shared_audit.post(message["headers"], body)
        assert response.status_code == 200, response.text
        sent = message["events"]
        source = sent[0]["attributes"]["source"]
        items = shared_audit.page(source=source)["items"]
        assert [view_of(stored_event(i), as_strings=mode == "binary", milliseconds=True) for i in items] == [
            js_view(e, as_strings=mode == "binary") for e in sent
        ]


# --- the database away: 503, never a 2xx; healthy once it is back --------------------------------


@contextlib.contextmanager
def database_unavailable(db_url: str, outage: str) -> Iterator[None]:
    """``locked``: another session holds the lock appends need. ``closed``: PostgreSQL takes no connections."""
    if db_url.startswith("sqlite"):
        assert outage == "locked"
        holder = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    name = db_url.rsplit("/", 1)[1]
    if outage == "locked":
        with psycopg.connect(db_url) as holder:  # one transaction, rolled back on leaving
            holder.execute("LOCK TABLE audit_chain_head IN ACCESS EXCLUSIVE MODE")
            yield
        return
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        try:
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


def test_database_unavailable_is_503_then_healthy_again(db_url: str) -> None:
    source = unique_source("outage")
    outages = ["locked"] if db_url.startswith("sqlite") else ["locked", "closed"]
    with start_audit(db_url, kind_of(db_url), lock_timeout=0.2) as server:
        before = CloudEvent.create(type="t.before", source=source)
        server.stored(before)
        stored = [before]
        for outage in outages:
            refused = [CloudEvent.create(type=f"t.refused.{outage}", source=source) for _ in range(3)]
            with database_unavailable(db_url, outage):
                for index, event in enumerate(refused):
                    response = server.send(event, mode=("structured", "binary", "batch")[index])
                    assert_problem(response, 503, "unavailable")
                    assert int(response.headers["retry-after"]) >= 1
                    assert "nothing was stored" in response.json()["detail"]
                if outage == "closed":
                    assert_problem(server.client.get("/readyz"), 503, "not-ready")
                assert server.client.get("/healthz").status_code == 200
            wait_until(lambda: server.client.get("/readyz").status_code == 200, what="/readyz to answer 200")
            assert [stored_event(i) for i in server.page(source=source)["items"]] == stored
            after = CloudEvent.create(type=f"t.after.{outage}", source=source)
            server.stored(after, refused[0])  # the sender's retry of a refused event is taken now
            stored += [after, refused[0]]
            assert [stored_event(i) for i in server.page(source=source)["items"]] == stored
        assert server.metric("eventaudit_rejected_requests_total", reason="unavailable") == 3 * len(outages)


def test_any_rfc3339_year_is_stored_and_found_by_time(shared_audit: AuditServer) -> None:
    # RFC 3339 §5.6: date-fullyear is any 4DIGIT, 0000 included, though datetime cannot hold year 0.
    source = unique_source("years")
    early, late = (
        CloudEvent.create(type="t.y", source=source, time=t) for t in ("0000-01-01T00:00:00Z", "9999-12-31T23:59:59Z")
    )
    assert None not in shared_audit.stored(early, late, mode="batch")
    found = shared_audit.page(source=source, on="time", until="0001-01-01T00:00:00Z")["items"]
    assert [item["event"]["time"] for item in found] == ["0000-01-01T00:00:00Z"]
