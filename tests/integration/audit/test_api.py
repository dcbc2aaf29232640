"""The audit service's read API over real HTTP, on SQLite and PostgreSQL.

Query filters, order and cursors (also while events keep arriving), the live tail (SSE) with
resumption, export (JSON lines that re-ingest as they are, and CSV), stats, the operations
routes, and the read token on every ``/v1`` route.
"""

from __future__ import annotations

import csv
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from eventaudit import httpserver
from eventaudit.accesslog import AccessLog
from eventaudit.audit.app import create_app
from eventaudit.audit.settings import AuditSettings, SettingsError
from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format
from eventaudit.httpprotocol import ProblemH11Protocol
from tests.integration.audit.conftest import (
    READ_TOKEN,
    SECOND_READ_TOKEN,
    AuditServer,
    assert_problem,
    new_database,
    start_audit,
    unique_source,
    wait_until,
)
from tests.integration.servers import free_port

ITEM_KEYS = {"seq", "recordedtime", "event"}


def decoded(item: dict[str, Any]) -> CloudEvent:
    return json_format.decode(json.dumps(item["event"]).encode())


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["event"]["id"] for item in items]


def make(source: str, type: str, index: int, **fields: Any) -> CloudEvent:
    return CloudEvent.create(type=type, source=source, id=f"{type}-{index}", data={"n": index}, **fields)


@pytest.fixture(scope="module")
def catalogue(shared_audit: AuditServer) -> dict[str, Any]:
    """A set of events under two sources of their own, posted once per database."""
    source, other = unique_source("filters"), unique_source("filters-other")
    times = ["2024-01-01T10:00:00Z", "2024-01-01T10:30:00.5+00:00", "2024-01-01T12:00:00+01:00", "2024-01-02T00:00:00Z"]
    events = [
        make(source, "user.created", 0, subject="users/1", time=times[0]),
        make(source, "user.updated", 1, subject="users/1", time=times[1]),
        make(source, "order.created", 2, subject="orders/9", time=times[2]),
        make(source, "user.deleted", 3, subject="users/2", time=times[3]),
        make(source, "user_admin.created", 4, subject="users/3"),
        make(source, "userXadmin.created", 5, subject="users/3"),
        make(source, "User.created", 6),
        make(other, "user.created", 7, subject="users/1"),
    ]
    for event in events:
        shared_audit.stored(event)
    return {"source": source, "other": other, "events": events}


# --- the answer shape ----------------------------------------------------------------------------


def test_answer_shape_and_events_re_decode(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    body = shared_audit.page(source=catalogue["source"])
    assert set(body) == {"items", "next_cursor"}
    assert isinstance(body["next_cursor"], str)
    items = body["items"]
    for item in items:
        assert set(item) == ITEM_KEYS
        assert isinstance(item["seq"], int)
        assert item["recordedtime"].endswith("Z")
        assert item["event"]["specversion"] == "1.0"
    assert [decoded(item) for item in items] == catalogue["events"][:7]
    seqs = [item["seq"] for item in items]
    assert seqs == sorted(seqs)
    assert [item["recordedtime"] for item in items] == sorted(item["recordedtime"] for item in items)


# --- filters ---------------------------------------------------------------------------------------


FILTERS: dict[str, tuple[dict[str, str], list[int]]] = {
    "type-exact": ({"type": "user.created"}, [0]),
    "type-prefix": ({"type": "user.*"}, [0, 1, 3]),
    "type-prefix-underscore-is-literal": ({"type": "user_*"}, [4]),
    "type-prefix-is-case-sensitive": ({"type": "User*"}, [6]),
    "type-star-is-everything": ({"type": "*"}, [0, 1, 2, 3, 4, 5, 6]),
    "type-unknown": ({"type": "nothing.like.this"}, []),
    "subject": ({"subject": "users/1"}, [0, 1]),
    "id": ({"id": "order.created-2"}, [2]),
    # on=time: 0 at 10:00Z, 1 at 10:30:00.5Z, 2 at 11:00Z, 3 the next day, 4-6 now
    "since-time-inclusive": ({"on": "time", "since": "2024-01-01T10:30:00.5Z"}, [1, 2, 3, 4, 5, 6]),
    "until-time-exclusive": ({"on": "time", "until": "2024-01-01T11:00:00Z"}, [0, 1]),
    "since-until-time-with-offsets": (
        {"on": "time", "since": "2024-01-01T11:00:00+01:00", "until": "2024-01-01T23:59:59.999999Z"},
        [0, 1, 2],
    ),
    "until-time-fraction-inclusive": ({"on": "time", "until": "2024-01-01T10:30:00.500001Z"}, [0, 1]),
    "until-time-fraction-exclusive": ({"on": "time", "until": "2024-01-01T10:30:00.5Z"}, [0]),
    "since-time-lowercase-t-and-z": ({"on": "time", "since": "2024-01-01t10:30:00.5z"}, [1, 2, 3, 4, 5, 6]),
    "since-time-leap-second": (
        {"on": "time", "since": "2023-12-31T23:59:60Z", "until": "2024-01-02T00:00:00Z"},
        [0, 1, 2],
    ),
    "until-time-nanoseconds": ({"on": "time", "until": "2024-01-01T10:30:00.500000999Z"}, [0]),
    "type-and-subject": ({"type": "user.*", "subject": "users/2"}, [3]),
}


@pytest.mark.parametrize("name", FILTERS)
def test_filter(shared_audit: AuditServer, catalogue: dict[str, Any], name: str) -> None:
    params, expected = FILTERS[name]
    items = shared_audit.items(source=catalogue["source"], **params)
    assert ids(items) == [catalogue["events"][i].id for i in expected]


def test_source_filter(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    items = shared_audit.items(source=catalogue["other"])
    assert [decoded(i) for i in items] == [catalogue["events"][7]]


def test_time_filters_and_buckets_before_1970(shared_audit: AuditServer) -> None:
    source = unique_source("epoch")
    early = make(source, "t.early", 0, time="1969-12-31T23:59:59.5Z")
    late = make(source, "t.late", 1, time="1970-01-01T00:00:00.25Z")
    shared_audit.stored(early, late)
    at = {"source": source, "on": "time"}
    assert ids(shared_audit.items(**at, until="1970-01-01T00:00:00Z")) == [early.id]
    assert ids(shared_audit.items(**at, since="1969-12-31T23:59:59.5Z")) == [early.id, late.id]
    assert ids(shared_audit.items(**at, since="1969-12-31T23:59:59.500001Z")) == [late.id]
    assert ids(shared_audit.items(**at, until="1969-12-31T23:59:59.5Z")) == []
    body = shared_audit.reader.get("/v1/stats", params={**at, "bucket": "minute"}).json()
    assert body["buckets"] == [
        {"start": "1969-12-31T23:59:00.000000Z", "counts": {"t.early": 1}},
        {"start": "1970-01-01T00:00:00.000000Z", "counts": {"t.late": 1}},
    ]


def test_since_until_on_recordedtime(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    items = shared_audit.items(source=catalogue["source"])
    stamps = [item["recordedtime"] for item in items]
    third = stamps[2]
    later = [i for i in items if i["recordedtime"] >= third]
    earlier = [i for i in items if i["recordedtime"] < third]
    assert ids(shared_audit.items(source=catalogue["source"], since=third)) == ids(later)
    assert ids(shared_audit.items(source=catalogue["source"], until=third)) == ids(earlier)
    assert ids(shared_audit.items(source=catalogue["source"], on="recordedtime", since=third, until=third)) == []


def test_order_and_limit(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    source = catalogue["source"]
    ascending = ids(shared_audit.items(source=source))
    assert ids(shared_audit.items(source=source, order="desc")) == ascending[::-1]
    first = shared_audit.page(source=source, limit=3, order="desc")
    assert ids(first["items"]) == ascending[::-1][:3]
    second = shared_audit.page(source=source, limit=3, order="desc", cursor=first["next_cursor"])
    assert ids(second["items"]) == ascending[::-1][3:6]
    last = shared_audit.page(source=source, limit=3, order="desc", cursor=second["next_cursor"])
    assert ids(last["items"]) == ascending[::-1][6:]
    assert last["next_cursor"] is None  # desc ends: nothing older will ever come


# --- cursors while events keep arriving ------------------------------------------------------------


class Producer(threading.Thread):
    """POSTs events to ``source`` until stopped, each stored before the next."""

    def __init__(self, server: AuditServer, source: str) -> None:
        super().__init__(daemon=True)
        self.server, self.source = server, source
        self.sent: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.server.url, timeout=10) as client:
                while not self.stop.is_set() and len(self.sent) < 400:
                    event = CloudEvent.create(type="t.flow", source=self.source, id=f"flow-{len(self.sent):04d}")
                    response = client.post(
                        "/", headers={"content-type": json_format.CONTENT_TYPE}, content=json_format.encode(event)
                    )
                    assert response.status_code == 200, response.text
                    self.sent.append(event.id)
        except BaseException as exc:
            self.error = exc


@pytest.fixture
def producer(shared_audit: AuditServer) -> Iterator[Producer]:
    thread = Producer(shared_audit, unique_source("flow"))
    thread.start()
    wait_until(lambda: len(thread.sent) >= 5, what="the producer to store its first events")
    yield thread
    thread.stop.set()
    thread.join(10)
    assert thread.error is None, thread.error


def test_ascending_cursor_never_skips_or_repeats_while_events_arrive(
    shared_audit: AuditServer, producer: Producer
) -> None:
    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"source": producer.source, "limit": 4}
    for _ in range(15):
        body = shared_audit.page(**params)
        seen.extend(body["items"])
        params["cursor"] = body["next_cursor"]
    assert producer.is_alive(), "the producer stopped before the reader was done: no concurrency was tested"
    producer.stop.set()
    producer.join(10)
    while True:  # then drain: the asc cursor always goes on
        body = shared_audit.page(**params)
        if not body["items"]:
            break
        seen.extend(body["items"])
        params["cursor"] = body["next_cursor"]
    assert ids(seen) == producer.sent  # all of them, once each, in the order they were stored
    seqs = [item["seq"] for item in seen]
    assert seqs == sorted(set(seqs))


def test_descending_cursor_never_skips_or_repeats_while_events_arrive(
    shared_audit: AuditServer, producer: Producer
) -> None:
    first = shared_audit.page(source=producer.source, limit=3, order="desc")
    newest = first["items"][0]["seq"]
    seen = list(first["items"])
    cursor = first["next_cursor"]
    while cursor is not None:
        body = shared_audit.page(source=producer.source, limit=3, order="desc", cursor=cursor)
        seen.extend(body["items"])
        cursor = body["next_cursor"]
    assert producer.is_alive(), "the producer stopped before the reader was done: no concurrency was tested"
    expected = [i for i in shared_audit.items(source=producer.source) if i["seq"] <= newest][::-1]
    assert ids(seen) == ids(expected)


def test_last_ascending_cursor_picks_up_later_events(shared_audit: AuditServer) -> None:
    source = unique_source("resume")
    shared_audit.stored(make(source, "t.a", 0))
    body = shared_audit.page(source=source)
    end = shared_audit.page(source=source, cursor=body["next_cursor"])
    assert end["items"] == []
    later = make(source, "t.a", 1)
    shared_audit.stored(later)
    assert ids(shared_audit.page(source=source, cursor=end["next_cursor"])["items"]) == [later.id]


# --- live tail -------------------------------------------------------------------------------------


class Tail:
    """An open ``/v1/events/stream``, read one SSE event at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        assert next(self.lines).startswith(":")  # the greeting comment: the tail is in place

    def next(self) -> tuple[int, dict[str, Any]]:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line.startswith(":"):
                continue
            if not line:
                if fields:
                    break
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        assert fields.get("event") == "cloudevent", fields
        item = json.loads(fields["data"])
        assert set(item) == ITEM_KEYS
        assert int(fields["id"]) == item["seq"]
        return item["seq"], item


@pytest.fixture
def tail(shared_audit: AuditServer) -> Iterator[Any]:
    streams: list[Any] = []

    def open_tail(headers: dict[str, str] | None = None, **params: Any) -> Tail:
        client = httpx.Client(base_url=shared_audit.url, timeout=httpx.Timeout(10.0))
        context = client.stream(
            "GET",
            "/v1/events/stream",
            params=params,
            headers={"authorization": f"Bearer {READ_TOKEN}", **(headers or {})},
        )
        response = context.__enter__()
        streams.append((client, context))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return Tail(response)

    yield open_tail
    for client, context in streams:
        context.__exit__(None, None, None)
        client.close()


def test_tail_delivers_events_posted_after_connecting(shared_audit: AuditServer, tail: Any) -> None:
    source = unique_source("tail")
    before = make(source, "t.before", 0)
    shared_audit.stored(before)
    stream = tail(source=source)
    sent = [make(source, "t.live", i) for i in range(3)]
    seqs = [shared_audit.stored(event)[0] for event in sent]
    received = [stream.next() for _ in sent]
    assert [seq for seq, _ in received] == seqs
    assert [decoded(item) for _, item in received] == sent  # not `before`: the tail starts now


def test_tail_honours_filters(shared_audit: AuditServer, tail: Any) -> None:
    source = unique_source("tail-filter")
    stream = tail(source=source, type="user.*")
    shared_audit.stored(make(source, "order.created", 0))
    shared_audit.stored(make(unique_source("elsewhere"), "user.created", 1))
    wanted = make(source, "user.created", 2)
    shared_audit.stored(wanted)
    _, item = stream.next()
    assert decoded(item) == wanted


def test_tail_resumes_with_last_event_id_without_gaps_or_repeats(shared_audit: AuditServer, tail: Any) -> None:
    source = unique_source("tail-resume")
    first = tail(source=source)
    sent = [make(source, "t.r", i) for i in range(6)]
    for event in sent[:3]:
        shared_audit.stored(event)
    got = [first.next() for _ in range(2)]  # the client reads two, then loses the connection
    first.response.close()
    for event in sent[3:5]:
        shared_audit.stored(event)  # stored while it was away
    resumed = tail({"last-event-id": str(got[-1][0])}, source=source)
    shared_audit.stored(sent[5])
    got += [resumed.next() for _ in range(4)]
    assert [decoded(item) for _, item in got] == sent
    seqs = [seq for seq, _ in got]
    assert seqs == sorted(set(seqs))
    by_query = tail(source=source, after=str(got[3][0]))
    assert decoded(by_query.next()[1]) == sent[4]


# --- export ----------------------------------------------------------------------------------------


def test_export_jsonl_re_ingests_into_an_empty_service(
    shared_audit: AuditServer, catalogue: dict[str, Any], tmp_path: Path
) -> None:
    response = shared_audit.reader.get("/v1/events/export", params={"source": catalogue["source"]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.text.splitlines()
    assert len(lines) == 7
    for line in lines:
        json_format.decode(line.encode())  # every line alone is a structured event
    with new_database(shared_audit.kind, tmp_path) as url, start_audit(url, shared_audit.kind) as empty:
        assert empty.items() == []
        batch = b"[" + b",".join(line.encode() for line in lines) + b"]"
        answer = empty.post({"content-type": json_format.BATCH_CONTENT_TYPE}, batch)
        assert answer.status_code == 200, answer.text
        assert answer.json()["stored"] == 7
        copied = empty.items()
    original = shared_audit.items(source=catalogue["source"])
    assert [item["event"] for item in copied] == [item["event"] for item in original]
    assert [decoded(item) for item in copied] == catalogue["events"][:7]


def test_export_honours_filters(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    response = shared_audit.reader.get(
        "/v1/events/export", params={"source": catalogue["source"], "type": "user.*", "format": "jsonl"}
    )
    assert [json.loads(line)["type"] for line in response.text.splitlines()] == [
        "user.created",
        "user.updated",
        "user.deleted",
    ]


def test_export_csv(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    response = shared_audit.reader.get("/v1/events/export", params={"source": catalogue["source"], "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    items = shared_audit.items(source=catalogue["source"])
    assert len(rows) == len(items) == 7
    for row, item in zip(rows, items, strict=True):
        event = item["event"]
        assert int(row["seq"]) == item["seq"]
        assert row["recordedtime"] == item["recordedtime"]
        for name in ("id", "source", "type", "subject", "time", "datacontenttype"):
            assert row[name] == event.get(name, ""), name
        assert json.loads(row["event"]) == event


# --- stats -----------------------------------------------------------------------------------------


def test_stats_by_type_per_hour_on_event_time(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    response = shared_audit.reader.get(
        "/v1/stats", params={"source": catalogue["source"], "on": "time", "bucket": "hour", "by": "type"}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["bucket"] == "hour"
    assert body["by"] == "type"
    assert body["buckets"][:3] == [
        {"start": "2024-01-01T10:00:00.000000Z", "counts": {"user.created": 1, "user.updated": 1}},
        {"start": "2024-01-01T11:00:00.000000Z", "counts": {"order.created": 1}},
        {"start": "2024-01-02T00:00:00.000000Z", "counts": {"user.deleted": 1}},
    ]
    # the last three were created without a time of their own: "now"
    assert sum(sum(b["counts"].values()) for b in body["buckets"][3:]) == 3


def test_stats_by_source_per_day_on_recordedtime(shared_audit: AuditServer, catalogue: dict[str, Any]) -> None:
    body = shared_audit.reader.get("/v1/stats", params={"type": "user.created", "bucket": "day", "by": "source"}).json()
    assert body["bucket"] == "day"
    assert body["by"] == "source"
    totals: dict[str, int] = {}
    for bucket in body["buckets"]:
        assert set(bucket) == {"start", "counts"}
        assert bucket["start"].endswith("T00:00:00.000000Z")
        for key, count in bucket["counts"].items():
            totals[key] = totals.get(key, 0) + count
    assert totals[catalogue["source"]] == 1
    assert totals[catalogue["other"]] == 1


def test_stats_minute_buckets_count_everything(shared_audit: AuditServer) -> None:
    source = unique_source("stats")
    for i in range(5):
        shared_audit.stored(make(source, "t.s", i))
    body = shared_audit.reader.get("/v1/stats", params={"source": source, "bucket": "minute"}).json()
    assert body["by"] == "type"
    assert sum(b["counts"]["t.s"] for b in body["buckets"]) == 5
    assert all(b["start"].endswith(":00.000000Z") for b in body["buckets"])


# --- operations ------------------------------------------------------------------------------------


def test_health_and_readiness(shared_audit: AuditServer) -> None:
    assert shared_audit.client.get("/healthz").json() == {"status": "ok"}
    ready = shared_audit.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


def test_metrics_move(shared_audit: AuditServer) -> None:
    response = shared_audit.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    ingested = shared_audit.metric("eventaudit_ingested_events_total", transport="http")
    rejected = shared_audit.metric("eventaudit_rejected_requests_total", reason="invalid_event")
    commits = shared_audit.metric("eventaudit_commit_seconds_count")
    bucket = "eventaudit_request_batch_events_bucket"
    batches = {le: shared_audit.metric(bucket, le=le) for le in ("1.0", "2.0", "+Inf")}
    batch_sum = shared_audit.metric("eventaudit_request_batch_events_sum")
    source = unique_source("metrics")
    seqs = shared_audit.stored(make(source, "t.m", 0), make(source, "t.m", 1))
    shared_audit.post({"content-type": json_format.CONTENT_TYPE}, b"{}")
    # the batch of two is one request of two events (the invalid one was refused before it was counted)
    assert shared_audit.metric(bucket, le="1.0") == batches["1.0"]
    assert shared_audit.metric(bucket, le="2.0") == batches["2.0"] + 1
    assert shared_audit.metric(bucket, le="+Inf") == batches["+Inf"] + 1
    assert shared_audit.metric("eventaudit_request_batch_events_count") == batches["+Inf"] + 1
    assert shared_audit.metric("eventaudit_request_batch_events_sum") == batch_sum + 2
    assert shared_audit.metric("eventaudit_ingested_events_total", transport="http") == ingested + 2
    assert shared_audit.metric("eventaudit_rejected_requests_total", reason="invalid_event") == rejected + 1
    assert shared_audit.metric("eventaudit_commit_seconds_count") >= commits + 1
    assert shared_audit.metric("eventaudit_last_seq") >= max(s for s in seqs if s is not None)


def test_openapi_and_docs(shared_audit: AuditServer) -> None:
    spec = shared_audit.client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/", "/v1/events", "/v1/events/stream", "/v1/events/export", "/v1/stats", "/healthz", "/readyz"):
        assert path in paths, path
    assert set(paths["/"]) == {"post", "options"}
    docs = shared_audit.client.get("/docs")
    assert docs.status_code == 200
    assert docs.headers["content-type"].startswith("text/html")
    assert "openapi.json" in docs.text


# --- the read token --------------------------------------------------------------------------------


def v1_routes(server: AuditServer) -> list[str]:
    paths = [p for p in server.client.get("/openapi.json").json()["paths"] if p.startswith("/v1")]
    assert len(paths) >= 4
    return paths


def test_every_v1_route_needs_a_read_token(shared_audit: AuditServer) -> None:
    for path in v1_routes(shared_audit):
        for headers in ({}, {"authorization": "Bearer read-token-for-tests-9999"}, {"authorization": READ_TOKEN}):
            problem = assert_problem(shared_audit.client.get(path, headers=headers), 401, "unauthorized")
            assert READ_TOKEN not in json.dumps(problem)
        for token in (READ_TOKEN, SECOND_READ_TOKEN):  # either configured token will do
            with shared_audit.client.stream("GET", path, headers={"authorization": f"Bearer {token}"}) as answer:
                assert answer.status_code == 200, path


def test_operations_need_no_token(shared_audit: AuditServer) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"):
        assert shared_audit.client.get(path).status_code == 200, path


def test_no_read_token_configured_means_no_reads(tmp_path: Path) -> None:
    with start_audit(f"sqlite:///{tmp_path / 'closed.db'}", "sqlite", read_tokens=()) as server:
        assert_problem(server.client.get("/v1/events"), 401, "unauthorized")
        assert_problem(server.client.get("/v1/events", headers={"authorization": "Bearer"}), 401, "unauthorized")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "audit.example.com"])
def test_non_loopback_host_without_read_token_refuses_to_start(host: str, tmp_path: Path) -> None:
    settings = AuditSettings(host=host, db=f"sqlite:///{tmp_path / 'never.db'}")
    with pytest.raises(SettingsError, match=r"refusing to listen on .* without a read token") as raised:
        settings.check()
    assert host in str(raised.value)
    assert "--read-token" in str(raised.value)
    with pytest.raises(SettingsError):
        create_app(settings)
    assert not (tmp_path / "never.db").exists()
    AuditSettings(host=host, read_tokens=(READ_TOKEN,)).check()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_host_may_go_without_read_token(host: str) -> None:
    AuditSettings(host=host).check()


# --- stopping with live tails open ------------------------------------------------------------------


def test_live_tail_ends_when_the_server_stops(tmp_path: Path) -> None:
    """A tail never finishes on its own; httpserver.Server ends it so that shutdown does not wait for it."""
    settings = AuditSettings(db=f"sqlite:///{tmp_path / 'stop.db'}", read_tokens=(READ_TOKEN,))
    app = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        AccessLog(app), host="127.0.0.1", port=port, http=ProblemH11Protocol, lifespan="on", log_config=None
    )
    server = httpserver.Server(config, httpserver.stop_callbacks(app))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="the server to start")
    headers = {"authorization": f"Bearer {READ_TOKEN}"}
    with httpx.stream("GET", f"http://127.0.0.1:{port}/v1/events/stream", headers=headers, timeout=10) as response:
        lines = response.iter_lines()
        assert next(lines).startswith(":")
        started = time.monotonic()
        server.should_exit = True
        assert [line for line in lines if line and not line.startswith(":")] == []  # the stream ends, cleanly
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5, "shutdown waited for the live tail"
