"""Interop over Kafka with JavaScript: the official SDK (npm ``cloudevents``) makes the records, ``kafkajs``
writes them to a real broker (Tansu), and our audit consumer stores them (SQLite and PostgreSQL).

``js/kafka_produce.mjs`` is the producer. Each event goes in binary and in structured content mode
(kafka-protocol-binding.md §3.2, §3.3); every one must be stored with the attributes and data it was
given, the record key as ``partitionkey``. The SDK's binary records carry ``datacontenttype`` twice
(``content-type`` and ``ce_datacontenttype``); the consumer accepts that (issue 5).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from eventaudit.broker import DevBroker
from tests.conftest import require
from tests.integration.audit.conftest import kind_of
from tests.integration.conftest import db_url, pg_url, sqlite_url
from tests.interop.compare import instant
from tests.kafka.conftest import KafkaAudit, kafka_audit, new_topic

pytestmark = [pytest.mark.interop, pytest.mark.kafka]
__all__ = ["db_url", "pg_url", "sqlite_url"]  # the integration suite's databases: SQLite and PostgreSQL

JS_DIR = Path(__file__).parent / "js"
SETUP = "run `make test`: it installs the JavaScript SDK and kafkajs into tests/interop/js/node_modules with `npm ci`"
PER_MODE = 12


@pytest.fixture(scope="module")
def node() -> str:
    found = shutil.which("node")
    require(found is not None, f"node is not on PATH; {SETUP}")
    for package in ("cloudevents", "kafkajs"):
        require(
            (JS_DIR / "node_modules" / package / "package.json").is_file(), f"no {package} in node_modules; {SETUP}"
        )
    assert found is not None
    return found


@pytest.fixture
def consuming(broker: DevBroker, db_url: str) -> Iterator[KafkaAudit]:
    topic = new_topic(broker.bootstrap)
    with kafka_audit(db_url, kind_of(db_url), broker.bootstrap, topic) as audit:
        audit.wait_assigned()
        yield audit


def produce_with_kafkajs(node: str, audit: KafkaAudit, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run kafka_produce.mjs; what it wrote (key and headers of each record)."""
    done = subprocess.run(
        [node, "kafka_produce.mjs", audit.bootstrap, audit.topic],
        cwd=JS_DIR,
        input=json.dumps(events),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    written: list[dict[str, Any]] = json.loads(done.stdout)
    return written


def _events(source: str) -> list[dict[str, Any]]:
    """Events in both modes: JSON data, text data and no data in turn, each user a key of its own."""
    events = []
    for mode in ("binary", "structured"):
        for n in range(PER_MODE):
            user = f"user-{n % 4}"
            attributes: dict[str, Any] = {
                "specversion": "1.0",
                "id": f"{mode}-{n}",
                "source": source,
                "type": "com.example.user.updated",
                "subject": f"users/{user}",
                "time": f"2024-02-29T23:59:{n:02d}.{n:03d}Z",
                "partitionkey": user,
                "tenant": "acme",
            }
            event: dict[str, Any] = {"mode": mode, "attributes": attributes}
            if n % 3 == 0:
                attributes["datacontenttype"] = "application/json"
                event["data"] = {"n": n, "name": "Zoë", "tags": ["a", "b"], "active": True, "note": None}
            elif n % 3 == 1:
                attributes["datacontenttype"] = "text/plain; charset=utf-8"
                event["data"] = f"hello, wörld {n}"
            events.append(event)
    return events


def test_events_written_by_the_javascript_sdk_with_kafkajs_are_stored_as_given(
    node: str, consuming: KafkaAudit
) -> None:
    source = f"https://example.com/interop/kafkajs/{uuid.uuid4().hex[:12]}"
    events = _events(source)
    written = produce_with_kafkajs(node, consuming, events)

    # What went on the wire: key = partitionkey; the SDK's binary records say datacontenttype twice.
    assert len(written) == len(events)
    for event, record in zip(events, written, strict=True):
        attributes = event["attributes"]
        assert record["key"] == attributes["partitionkey"]
        if event["mode"] == "structured":
            assert list(record["headers"]) == ["content-type"]
            assert record["headers"]["content-type"].startswith("application/cloudevents+json")
        else:
            assert record["headers"]["ce_id"] == attributes["id"]
            if "datacontenttype" in attributes:
                assert record["headers"]["content-type"] == attributes["datacontenttype"]
                assert record["headers"]["ce_datacontenttype"] == attributes["datacontenttype"]
    assert any("ce_datacontenttype" in record["headers"] for record in written)

    items = consuming.wait_stored(source, len(events))
    stored = {item["event"]["id"]: item["event"] for item in items}
    assert len(items) == len(stored) == len(events), "an event is missing or stored twice"
    for event in events:
        given = event["attributes"]
        got = dict(stored[given["id"]])
        assert instant(got.pop("time")) == instant(given["time"]), given["id"]
        expected = {name: value for name, value in given.items() if name != "time"}
        if "data" in event:
            expected["data"] = event["data"]
        assert got == expected, given["id"]
    assert consuming.server.metric("eventaudit_kafka_records_total", outcome="dead-lettered") == 0
