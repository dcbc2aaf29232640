"""kill -9 of the audit service while it consumes 5,000 events from Kafka, then a restart (issue 5).

The consumer commits a batch's offsets only after the database committed it, so a crash loses
nothing (what was not committed is read again) and stores nothing twice (``UNIQUE(source, id)``).
The audit service runs as a real process on SQLite and on PostgreSQL; the broker is a Tansu of
this module. The hash chain must still verify.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer
from sqlalchemy import func, select

from eventaudit import db
from eventaudit.audit.models import events as events_table
from eventaudit.broker import DevBroker
from eventaudit.events import CloudEvent
from eventaudit.events.bindings import kafka
from tests.e2e.running import AuditService, items, run_cli, wait_for
from tests.integration.servers import metric_value
from tests.kafka.conftest import PARTITIONS, new_topic

pytestmark = [pytest.mark.e2e, pytest.mark.kafka]

EVENTS = 5000
KILL_AT = 500
CHUNK = 100
WINDOW = 400
SOURCE = "/e2e/kafka-crash"


def metric(url: str, name: str, **labels: str) -> float:
    """One sample of the service's ``/metrics`` (0 when absent)."""
    response = httpx.get(url + "/metrics", timeout=5)
    response.raise_for_status()
    return metric_value(response.text, name, **labels)


def stored(service: AuditService) -> int:
    return int(metric(service.url, "eventaudit_kafka_records_total", outcome="stored"))


def in_the_database(url: str) -> int:
    """Events of this test in the log, counted in the database itself."""
    engine = db.create(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).where(events_table.c.source == SOURCE)).scalar_one())
    finally:
        engine.dispose()


def consuming(db_url: str, broker: DevBroker, topic: str, group: str, cwd: Path, *options: str) -> AuditService:
    args = ["--kafka-bootstrap", broker.bootstrap, "--kafka-topic", topic, "--kafka-group", group]
    return AuditService(db_url, *args, *options, cwd=cwd)


class Producing(threading.Thread):
    """Produces ``events`` in acknowledged chunks, at most ``window`` ahead of what the service stored,
    so the service is in the middle of the stream whenever it is killed; after :meth:`unleash`, the rest
    at full speed (the service is gone)."""

    def __init__(self, bootstrap: str, topic: str, events: list[CloudEvent], service: AuditService) -> None:
        super().__init__(daemon=True)
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        self.topic, self.events, self.service = topic, events, service
        self.produced = 0
        self.failure: BaseException | None = None
        self._unleashed = threading.Event()

    def run(self) -> None:
        try:
            for start in range(0, len(self.events), CHUNK):
                self._wait_for_the_service()
                for event in self.events[start : start + CHUNK]:
                    key, headers, value = kafka.encode_binary(event)
                    self.producer.produce(
                        self.topic, key=key, value=value, headers=list[tuple[str, str | bytes | None]](headers)
                    )
                assert self.producer.flush(30) == 0, "records still in flight after 30 s"
                self.produced += len(self.events[start : start + CHUNK])
        except BaseException as exc:  # reported by finish()
            self.failure = exc

    def _wait_for_the_service(self) -> None:
        deadline = time.monotonic() + 60
        while not self._unleashed.is_set():
            try:
                if self.produced - stored(self.service) <= WINDOW:
                    return
            except httpx.HTTPError:
                if self._unleashed.is_set():
                    return
                raise
            assert time.monotonic() < deadline, f"nothing stored for 60 s, {self.produced} produced"
            time.sleep(0.01)

    def unleash(self) -> None:
        self._unleashed.set()

    def finish(self) -> None:
        self.unleash()
        self.join(120)
        assert not self.is_alive(), "the producer did not finish"
        if self.failure is not None:
            raise self.failure
        assert self.produced == len(self.events)


def test_kill_9_while_consuming_then_restart_stores_every_event_once(
    broker: DevBroker, db_url: str, tmp_path: Path
) -> None:
    topic = new_topic(broker.bootstrap, PARTITIONS)
    group = f"audit-{uuid.uuid4().hex[:8]}"
    events = [
        CloudEvent.create(
            type="user.updated",
            source=SOURCE,
            id=f"e-{n}",
            subject=f"user-{n % 97}",
            data={"n": n, "pad": "x" * 200},
            extensions={"partitionkey": f"user-{n % 97}"},
        )
        for n in range(EVENTS)
    ]
    first = consuming(db_url, broker, topic, group, tmp_path)
    producing = Producing(broker.bootstrap, topic, events, first)
    restarted: AuditService | None = None
    try:
        wait_for(
            lambda: metric(first.url, "eventaudit_kafka_assigned_partitions") == PARTITIONS,
            60,
            "the consumer to hold every partition",
        )
        producing.start()
        wait_for(lambda: stored(first) >= KILL_AT, 60, f"{KILL_AT} events stored")
        producing.unleash()
        first.kill()  # SIGKILL: the round under way is not finished, its offsets are not committed
        left = in_the_database(db_url)
        assert KILL_AT <= left < EVENTS, f"the kill came after {left} of {EVENTS} events were stored"
        producing.finish()

        restarted = consuming(db_url, broker, topic, group, tmp_path)
        wait_for(lambda: stored(restarted) + left >= EVENTS, 120, f"all {EVENTS} events stored")
        logged = items(restarted.url, source=SOURCE)
        assert stored(restarted) == EVENTS - left, "the restart stored an event the first run had stored"
        assert restarted.stop() == 0, restarted.output()
    finally:
        producing.unleash()
        first.kill()
        if restarted is not None:
            restarted.kill()

    ids = [item["event"]["id"] for item in logged]
    assert len(ids) == len(set(ids)), "an event is stored twice"
    assert set(ids) == {event.id for event in events}
    assert [item["seq"] for item in logged] == list(range(1, EVENTS + 1))
    done = run_cli("verify", "--db", db_url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: {EVENTS} records"), done.stdout
