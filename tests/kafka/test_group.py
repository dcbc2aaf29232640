"""Two audit consumers in one group over a 3-partition topic, one database (SQLite and PostgreSQL).

Issue 5: several audit processes in one group share the partitions; a rebalance loses nothing and
stores nothing twice. Both services run in this process (each its own app, metrics and consumer).
Tansu holds a group join for about 5 s with our 10 s session timeout, so every wait for an
assignment polls the ``eventaudit_kafka_assigned_partitions`` gauge with a deadline.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import httpx
import pytest
from sqlalchemy import func, select

from eventaudit import db
from eventaudit.audit.app import create_app
from eventaudit.audit.ingest_kafka import KafkaIngest
from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.models import events as events_table
from eventaudit.audit.settings import AuditSettings
from eventaudit.broker import DevBroker
from eventaudit.events import CloudEvent
from eventaudit.events.bindings import kafka
from tests.integration.audit.conftest import READ_TOKEN, AuditServer, kind_of, unique_source, wait_until
from tests.integration.servers import serve_in_thread
from tests.kafka.conftest import PARTITIONS, committed, new_topic, producer

pytestmark = pytest.mark.kafka

ASSIGNED = "eventaudit_kafka_assigned_partitions"
KEYS = 40
FIRST = 600
SECOND = 2400
BATCH = 20


def _record(source: str, n: int) -> tuple[bytes | None, list[tuple[str, bytes]], bytes | None]:
    user = f"user-{n % KEYS}"
    event = CloudEvent.create(
        type="user.updated", source=source, id=f"e-{n}", subject=user, data={"n": n}, extensions={"partitionkey": user}
    )
    return kafka.encode_binary(event)


def _h(headers: list[tuple[str, bytes]]) -> list[tuple[str, str | bytes | None]]:
    return list[tuple[str, str | bytes | None]](headers)


def _produce(bootstrap: str, topic: str, source: str, numbers: range) -> None:
    p = producer(bootstrap)
    for n in numbers:
        key, headers, value = _record(source, n)
        p.produce(topic, key=key, headers=_h(headers), value=value)
    assert p.flush(30) == 0, "records still in flight after 30 s"


def _ids_in_the_database(url: str, source: str) -> Counter[str]:
    """How often each id of ``source`` is in the log, read from the database itself."""
    engine = db.create(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(events_table.c.id, func.count())
                .where(events_table.c.source == source)
                .group_by(events_table.c.id)
            ).all()
    finally:
        engine.dispose()
    return Counter({row[0]: row[1] for row in rows})


def _count(url: str, source: str) -> int:
    return sum(_ids_in_the_database(url, source).values())


@dataclass
class Consumer:
    """A consuming audit service and its metrics, which stay readable after it stopped."""

    server: AuditServer
    metrics: AuditMetrics
    ingest: KafkaIngest

    def records(self, outcome: str) -> int:
        value = self.metrics.registry.get_sample_value("eventaudit_kafka_records_total", {"outcome": outcome})
        return int(value or 0)

    def assigned(self) -> int:
        return int(self.metrics.registry.get_sample_value(ASSIGNED) or 0)


@contextlib.contextmanager
def consuming(url: str, bootstrap: str, topic: str, group: str) -> Iterator[Consumer]:
    """An audit service on ``url`` in ``group`` (in this process, on a free port)."""
    settings = replace(
        AuditSettings(db=url, read_tokens=(READ_TOKEN,)),
        kafka_bootstrap=bootstrap,
        kafka_topic=topic,
        kafka_group=group,
    )
    app = create_app(settings)
    with (
        serve_in_thread(app) as base,
        httpx.Client(base_url=base, timeout=10) as client,
        httpx.Client(base_url=base, timeout=10, headers={"authorization": f"Bearer {READ_TOKEN}"}) as reader,
    ):
        yield Consumer(AuditServer(base, settings, client, reader, kind_of(url)), app.state.metrics, app.state.kafka)


class Stream(threading.Thread):
    """Produces events ``start`` … ``start + count - 1`` in acknowledged batches, never more than
    ``window`` ahead of ``stored()``: so it goes on through a rebalance, but only so far ahead."""

    def __init__(
        self, bootstrap: str, topic: str, source: str, numbers: range, stored: Callable[[], int], window: int = 200
    ) -> None:
        super().__init__(daemon=True)
        self.topic, self.source, self.numbers = topic, source, numbers
        self.stored, self.window = stored, window
        self.producer = producer(bootstrap)
        self.produced = 0
        self.failure: BaseException | None = None

    def run(self) -> None:
        try:
            for start in range(0, len(self.numbers), BATCH):
                deadline = time.monotonic() + 60
                while self.produced - self.stored() > self.window:
                    assert time.monotonic() < deadline, f"nothing stored for 60 s, {self.produced} produced"
                    time.sleep(0.01)
                for n in self.numbers[start : start + BATCH]:
                    key, headers, value = _record(self.source, n)
                    self.producer.produce(self.topic, key=key, headers=_h(headers), value=value)
                assert self.producer.flush(30) == 0, "records still in flight after 30 s"
                self.produced += len(self.numbers[start : start + BATCH])
        except BaseException as exc:  # reported by finish()
            self.failure = exc

    def finish(self, timeout: float = 120) -> None:
        """Wait until every event was produced (and acknowledged)."""
        self.join(timeout)
        assert not self.is_alive(), f"the stream did not finish in {timeout} s"
        if self.failure is not None:
            raise self.failure
        assert self.produced == len(self.numbers)


def test_two_consumers_share_the_partitions_and_a_rebalance_stores_everything_once(
    broker: DevBroker, db_url: str
) -> None:
    topic = new_topic(broker.bootstrap, PARTITIONS)
    group = f"group-{topic}"
    source = unique_source("group")
    with consuming(db_url, broker.bootstrap, topic, group) as a, contextlib.ExitStack() as b_running:
        b = b_running.enter_context(consuming(db_url, broker.bootstrap, topic, group))

        def shared() -> bool:
            return a.assigned() >= 1 and b.assigned() >= 1 and a.assigned() + b.assigned() == PARTITIONS

        wait_until(shared, 60, "both consumers to hold partitions of the group, 3 in all")

        # --- both running: every event stored once, each consumer stored its share -----------------
        _produce(broker.bootstrap, topic, source, range(FIRST))
        wait_until(lambda: a.records("stored") + b.records("stored") >= FIRST, 60, f"{FIRST} events stored")
        stored_by = {name: audit.records("stored") for name, audit in (("a", a), ("b", b))}
        assert stored_by["a"] > 0, stored_by
        assert stored_by["b"] > 0, stored_by
        assert stored_by["a"] + stored_by["b"] == FIRST, stored_by
        assert a.records("duplicate") + b.records("duplicate") == 0, "a record was read by both"
        ids = _ids_in_the_database(db_url, source)
        assert set(ids) == {f"e-{n}" for n in range(FIRST)}
        assert max(ids.values()) == 1
        assert len(a.server.items(source=source)) == FIRST

        # --- b leaves while events keep coming: a takes over every partition -----------------------
        b_before = stored_by["b"]
        stream = Stream(
            broker.bootstrap,
            topic,
            source,
            range(FIRST, FIRST + SECOND),
            lambda: a.records("stored") + b.records("stored") - FIRST,
        )
        stream.start()
        wait_until(lambda: b.records("stored") > b_before, 60, "b to store events of the stream")
        produced_when_b_stops = stream.produced
        b_running.close()  # b finishes its round, commits, and leaves the group
        wait_until(lambda: a.assigned() == PARTITIONS, 60, "a to hold every partition after b left")
        taken_over = stream.produced
        stream.finish()
        assert produced_when_b_stops < taken_over < SECOND, (produced_when_b_stops, taken_over)

        total = FIRST + SECOND
        wait_until(lambda: a.records("stored") + b.records("stored") >= total, 120, f"{total} events stored")
        ids = _ids_in_the_database(db_url, source)
        assert set(ids) == {f"e-{n}" for n in range(total)}
        assert max(ids.values()) == 1, [i for i, c in ids.items() if c > 1][:10]
        assert len(a.server.items(source=source)) == total

        stored = a.records("stored") + b.records("stored")
        assert stored == total, (stored, total, a.records("duplicate") + b.records("duplicate"))
        assert a.records("dead-lettered") + b.records("dead-lettered") == 0

        # the group's offsets cover every record (one offset per record, from 0), nothing beyond
        def committed_all() -> bool:
            return sum(committed(broker.bootstrap, group, topic).values()) == total

        wait_until(committed_all, 30, f"the group's offsets to cover all {total} records")


def test_what_was_stored_but_not_committed_is_read_again_by_the_next_member_and_stored_once(
    broker: DevBroker, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window a crash can hit: the database committed a batch, the offsets were not committed."""
    topic = new_topic(broker.bootstrap, PARTITIONS)
    group = f"group-{topic}"
    source = unique_source("uncommitted")
    with consuming(db_url, broker.bootstrap, topic, group) as first:
        monkeypatch.setattr(first.ingest, "_commit_offsets", lambda _messages: None)
        wait_until(lambda: first.assigned() == PARTITIONS, 60, "the first consumer to hold every partition")
        _produce(broker.bootstrap, topic, source, range(300))
        wait_until(lambda: first.records("stored") >= 300, 60, "300 events stored")
        assert _count(db_url, source) == 300
    assert all(offset < 0 for offset in committed(broker.bootstrap, group, topic).values()), "offsets were committed"

    with consuming(db_url, broker.bootstrap, topic, group) as second:
        wait_until(lambda: second.records("duplicate") >= 300, 60, "the second consumer to read all 300 again")
        wait_until(
            lambda: sum(committed(broker.bootstrap, group, topic).values()) == 300,
            30,
            "the second consumer to commit the offsets of all 300",
        )
        assert second.records("stored") == 0
        assert second.records("duplicate") == 300
    ids = _ids_in_the_database(db_url, source)
    assert set(ids) == {f"e-{n}" for n in range(300)}
    assert max(ids.values()) == 1
