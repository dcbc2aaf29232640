"""The audit service's Kafka consumer against a real broker (Tansu), on SQLite and PostgreSQL.

One consuming audit service per module and database kind; each test keeps to its own ``source``.
Spec: kafka-protocol-binding.md §3.2 (binary), §3.3 (structured); the partitioning extension (key).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent
from confluent_kafka import Consumer

from eventaudit.broker import DevBroker
from eventaudit.events import CloudEvent
from eventaudit.events.bindings import kafka
from eventaudit.events.formats import json as json_format
from tests.integration.audit.conftest import new_database, unique_source, wait_until
from tests.integration.audit.test_ingest_http import database_unavailable
from tests.kafka.conftest import (
    PARTITIONS,
    KafkaAudit,
    committed,
    event_json,
    headers_of,
    kafka_audit,
    new_topic,
    produce,
    read_all,
)

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def consuming(
    request: pytest.FixtureRequest, broker: DevBroker, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaAudit]:
    kind = str(request.param)
    topic = new_topic(broker.bootstrap)
    with (
        new_database(kind, Path(tmp_path_factory.mktemp("audit"))) as url,
        kafka_audit(url, kind, broker.bootstrap, topic, max_body=1024 * 1024) as audit,
    ):
        audit.wait_assigned()
        yield audit


def _event(source: str, index: int, key: str = "user-1") -> CloudEvent:
    return CloudEvent.create(
        type="user.created",
        source=source,
        id=f"e-{index}",
        subject=key,
        data={"n": index},
        extensions={"partitionkey": key},
    )


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_records_in_each_content_mode_are_stored_as_sent(consuming: KafkaAudit, mode: str) -> None:
    """§3.2 / §3.3: what a producer writes in either mode is stored, key included (as partitionkey)."""
    source = unique_source(mode)
    encode = kafka.encode_binary if mode == "binary" else kafka.encode_structured
    events = [_event(source, i, key=f"user-{i % 4}") for i in range(20)]
    produce(consuming.bootstrap, consuming.topic, [tuple(encode(e)) for e in events])  # type: ignore[misc]
    items = consuming.wait_stored(source, 20)
    assert len(items) == 20
    stored = {item["event"]["id"]: item["event"] for item in items}
    for event in events:
        assert stored[event.id] == json.loads(json_format.encode(event)), event.id
    # per key (= per partition) the log keeps the order in which they were produced
    for key in {f"user-{i}" for i in range(4)}:
        ids = [item["event"]["id"] for item in items if item["event"]["partitionkey"] == key]
        assert ids == sorted(ids, key=lambda i: int(i.split("-")[1]))


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_records_written_by_the_official_python_sdk_are_stored(consuming: KafkaAudit, mode: str) -> None:
    source = unique_source("sdk-" + mode)
    fmt = JSONFormat()
    records = []
    for i in range(5):
        sdk_event = SdkEvent(
            {
                "type": "com.example.sdk",
                "source": source,
                "id": f"sdk-{i}",
                "partitionkey": f"k{i}",
                "datacontenttype": "application/json",
            },
            {"i": i},
        )
        message = (sdk_kafka.to_binary if mode == "binary" else sdk_kafka.to_structured)(sdk_event, fmt)
        records.append((message.key, list(message.headers.items()), message.value))
    produce(consuming.bootstrap, consuming.topic, records)  # type: ignore[arg-type]
    items = consuming.wait_stored(source, 5)
    assert sorted(item["event"]["id"] for item in items) == [f"sdk-{i}" for i in range(5)]
    assert all(item["event"]["data"] == {"i": int(item["event"]["id"][-1])} for item in items)


def test_a_record_read_twice_is_stored_once(consuming: KafkaAudit) -> None:
    source = unique_source("dupe")
    event = _event(source, 1)
    before = consuming.server.metric("eventaudit_kafka_records_total", outcome="duplicate")
    produce(consuming.bootstrap, consuming.topic, [tuple(kafka.encode_binary(event))] * 3)  # type: ignore[list-item]
    wait_until(
        lambda: consuming.server.metric("eventaudit_kafka_records_total", outcome="duplicate") >= before + 2,
        20,
        "two duplicates counted",
    )
    assert len(consuming.server.items(source=source)) == 1


_GOOD_HEADERS = [("ce_specversion", b"1.0"), ("ce_id", b"x"), ("ce_source", b"/s"), ("ce_type", b"t")]
POISON = {
    "garbage bytes": (b"garbage-key", [], b"\x8f\x00 not an event", "not-a-cloudevent", "no ce_specversion"),
    "no ce_id": (b"k", [h for h in _GOOD_HEADERS if h[0] != "ce_id"], b"{}", "invalid", "id"),
    "bad specversion": (b"k", [("ce_specversion", b"0.3"), *_GOOD_HEADERS[1:]], b"{}", "invalid", "specversion"),
    "invalid UTF-8 in a header": (
        b"k",
        [*_GOOD_HEADERS[:3], ("ce_type", b"user.\xc3\x28")],
        b"{}",
        "invalid",
        "not valid UTF-8",
    ),
    "a 2 MB value": (
        b"k",
        [*_GOOD_HEADERS, ("content-type", b"text/plain")],
        b"x" * (2 * 1024 * 1024),
        "too-large",
        "over the limit",
    ),
    "structured, not JSON": (b"k", [("content-type", b"application/cloudevents+json")], b"{not json", "invalid", ""),
}


@pytest.mark.parametrize("name", list(POISON))
def test_poison_goes_to_the_dead_letter_topic_and_the_next_record_is_stored(consuming: KafkaAudit, name: str) -> None:
    """A record that is not a valid CloudEvent never stalls its partition and is never dropped silently."""
    key, headers, value, kind, says = POISON[name]
    source = unique_source("after-poison")
    marker = uuid.uuid4().hex
    headers = [*headers, ("x-test-marker", marker.encode())]
    before = consuming.server.metric("eventaudit_kafka_dlq_records_total", reason=kind)
    good = kafka.encode_binary(_event(source, 1, key=key.decode("latin-1")))
    # the poison first, then a good record with the same key: same partition, behind it
    produce(consuming.bootstrap, consuming.topic, [(key, headers, value), (good.key, good.headers, good.value)])
    assert [item["event"]["id"] for item in consuming.wait_stored(source, 1)] == ["e-1"]
    wait_until(
        lambda: consuming.server.metric("eventaudit_kafka_dlq_records_total", reason=kind) >= before + 1,
        20,
        f"the {kind} dead letter counted",
    )
    dead = [
        m
        for m in read_all(consuming.bootstrap, consuming.topic + ".dlq", _dlq_count(consuming))
        if headers_of(m).get("x-test-marker") == marker.encode()
    ]
    assert len(dead) == 1, "exactly one dead letter for the poison record"
    letter = dead[0]
    found = headers_of(letter)
    assert letter.key() == key
    assert letter.value() == value  # the original value, byte for byte
    for header_name, header_value in headers:  # the original headers, unchanged
        assert found[header_name] == header_value
    assert found["eventaudit.dlq.kind"] == kind.encode()
    assert says.encode() in found["eventaudit.dlq.reason"]
    assert found["eventaudit.dlq.topic"] == consuming.topic.encode()
    assert int(found["eventaudit.dlq.offset"]) >= 0
    assert int(found["eventaudit.dlq.partition"]) in range(3)


def _dlq_count(consuming: KafkaAudit) -> int:
    text = consuming.server.client.get("/metrics").text
    return int(
        sum(
            float(line.rpartition(" ")[2])
            for line in text.splitlines()
            if line.startswith("eventaudit_kafka_dlq_records_total{")
        )
    )


def test_offsets_are_committed_once_the_records_are_stored(consuming: KafkaAudit) -> None:
    source = unique_source("offsets")
    events = [_event(source, i, key=f"u{i}") for i in range(30)]
    produce(consuming.bootstrap, consuming.topic, [tuple(kafka.encode_binary(e)) for e in events])  # type: ignore[misc]
    consuming.wait_stored(source, 30)

    def caught_up() -> bool:
        offsets = committed(consuming.bootstrap, consuming.group, consuming.topic)
        ends = {p: m.offset() for p, m in _last_per_partition(consuming).items()}
        return all(offsets.get(p, -1) == end + 1 for p, end in ends.items())

    wait_until(caught_up, 20, "the group's offsets at the end of every partition")


def _last_per_partition(consuming: KafkaAudit) -> dict[int, object]:
    total = int(consuming.server.metric("eventaudit_kafka_records_total", outcome="stored"))
    total += int(consuming.server.metric("eventaudit_kafka_records_total", outcome="duplicate"))
    total += int(consuming.server.metric("eventaudit_kafka_records_total", outcome="dead-lettered"))
    last: dict[int, object] = {}
    for message in read_all(consuming.bootstrap, consuming.topic, total):
        last[message.partition() or 0] = message
    return last


def test_readyz_and_metrics_show_the_consumer(consuming: KafkaAudit) -> None:
    assert consuming.server.client.get("/readyz").status_code == 200
    metrics = consuming.server.client.get("/metrics").text
    assert "eventaudit_kafka_consumer_lag{" in metrics
    assert consuming.server.metric("eventaudit_kafka_assigned_partitions") == 3


def test_a_structured_value_with_the_key_sets_partitionkey(consuming: KafkaAudit) -> None:
    """partitioning extension: the record key is the event's partitionkey when the event has none."""
    source = unique_source("key")
    produce(
        consuming.bootstrap,
        consuming.topic,
        [(b"user-42", [("content-type", b"application/cloudevents+json")], event_json(source, 7))],
    )
    (item,) = consuming.wait_stored(source, 1)
    assert item["event"]["partitionkey"] == "user-42"


def test_a_round_that_fails_unexpectedly_is_read_again_and_nothing_is_lost(
    consuming: KafkaAudit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No stalled partition: a round that raises is rewound, read again and stored (fault injected: a
    decoder that fails once, which the real one cannot be made to do)."""
    source = unique_source("flaky")
    real = kafka.decode
    failed: list[str] = []

    def flaky(key: object, headers: object, value: bytes | None, **options: object) -> CloudEvent:
        event = real(key, headers, value, **options)  # type: ignore[arg-type]
        if event.source == source and not failed:
            failed.append(event.id)
            raise RuntimeError("injected")
        return event

    monkeypatch.setattr(kafka, "decode", flaky)
    events = [_event(source, i, key=f"k{i}") for i in range(10)]
    produce(consuming.bootstrap, consuming.topic, [tuple(kafka.encode_binary(e)) for e in events])  # type: ignore[misc]
    items = consuming.wait_stored(source, 10)
    assert failed, "the injected failure happened"
    assert sorted(item["event"]["id"] for item in items) == sorted(e.id for e in events)


def test_readyz_is_503_when_the_broker_is_gone(own_broker: DevBroker, tmp_path: Path) -> None:
    topic = new_topic(own_broker.bootstrap)
    with kafka_audit(f"sqlite:///{tmp_path / 'a.db'}", "sqlite", own_broker.bootstrap, topic) as audit:
        audit.wait_assigned()
        wait_until(lambda: audit.server.client.get("/readyz").status_code == 200, 20, "ready")
        own_broker.kill()

        def not_ready() -> httpx.Response | None:
            response = audit.server.client.get("/readyz")
            return response if response.status_code == 503 else None

        response = wait_until(not_ready, 30, "/readyz to say 503")
        assert "Kafka" in response.json()["detail"]


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_database_outage_longer_than_the_poll_interval_keeps_the_consumer_in_its_group(
    broker: DevBroker, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """While the database is away the round is retried with the partitions paused and the consumer polled: past
    ``max.poll.interval.ms`` (here 7 s, the least librdkafka allows beside a 6 s session) it is still a member,
    so its partitions never move; once the database is back, everything is stored once."""
    topic = new_topic(broker.bootstrap)
    source = unique_source("outage")
    options = {"session.timeout.ms": "6000", "max.poll.interval.ms": "7000"}
    with (
        new_database(kind, tmp_path) as url,
        kafka_audit(url, kind, broker.bootstrap, topic, lock_timeout=0.2, kafka_options=options) as audit,
    ):
        audit.wait_assigned()
        events = [_event(source, i, key=f"k{i}") for i in range(12)]
        produce(audit.bootstrap, audit.topic, [tuple(kafka.encode_binary(e)) for e in events[:4]])  # type: ignore[misc]
        audit.wait_stored(source, 4)
        caplog.clear()
        with caplog.at_level(logging.INFO), database_unavailable(url, "locked"):
            produce(audit.bootstrap, audit.topic, [tuple(kafka.encode_binary(e)) for e in events[4:]])  # type: ignore[misc]
            wait_until(lambda: audit.server.metric("eventaudit_kafka_store_retries_total") >= 1, 20, "a retry")
            time.sleep(12)  # well past max.poll.interval.ms
            assert len(audit.server.items(source=source)) == 4  # nothing was stored meanwhile (reads still work)
        items = audit.wait_stored(source, 12)
        assert sorted(item["event"]["id"] for item in items) == sorted(e.id for e in events)  # each once
        messages = [record.getMessage() for record in caplog.records]
        assert not [m for m in messages if "revoked" in m or "poll interval" in m.lower()]
        assert audit.server.metric("eventaudit_kafka_assigned_partitions") == PARTITIONS
        assert audit.server.metric("eventaudit_kafka_store_retries_total") >= 2


def test_a_rebalance_while_the_database_is_away_leaves_the_waiting_round_to_the_next_owner(
    broker: DevBroker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another member joins the group (and leaves again) while a round waits for the database: the waiting round
    cannot be finished, so it is abandoned, not half-done; its records are read again from the committed offsets
    by the partitions' owner, and once the database is back each event is stored once."""
    topic = new_topic(broker.bootstrap)
    source = unique_source("rebalance")
    with (
        new_database("sqlite", tmp_path) as url,
        kafka_audit(url, "sqlite", broker.bootstrap, topic, lock_timeout=0.2) as audit,
    ):
        audit.wait_assigned()
        events = [_event(source, i, key=f"k{i}") for i in range(12)]
        produce(audit.bootstrap, audit.topic, [tuple(kafka.encode_binary(e)) for e in events[:4]])  # type: ignore[misc]
        audit.wait_stored(source, 4)
        with caplog.at_level(logging.INFO), database_unavailable(url, "locked"):
            produce(audit.bootstrap, audit.topic, [tuple(kafka.encode_binary(e)) for e in events[4:]])  # type: ignore[misc]
            wait_until(lambda: audit.server.metric("eventaudit_kafka_store_retries_total") >= 1, 20, "a retry")
            other = Consumer(
                {"bootstrap.servers": audit.bootstrap, "group.id": audit.group, "enable.auto.commit": False}
            )
            try:
                other.subscribe([audit.topic])
                deadline = time.monotonic() + 40
                while not other.assignment() and time.monotonic() < deadline:
                    other.poll(0.2)  # joins the group: the audit consumer's partitions are revoked and shared
                assert other.assignment(), "the second member got partitions"
            finally:
                other.close()  # leaves without committing anything: its partitions go back
            wait_until(
                lambda: audit.server.metric("eventaudit_kafka_assigned_partitions") == PARTITIONS, 40, "all back"
            )
        items = audit.wait_stored(source, 12, timeout=60)
        assert sorted(item["event"]["id"] for item in items) == sorted(e.id for e in events)  # each once
        assert any("left to the partitions' next owner" in record.getMessage() for record in caplog.records)
