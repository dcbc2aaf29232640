"""The audit store on SQLite and PostgreSQL: append (seq, dedupe, all-or-nothing), find, iterate, stats, schema."""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import unittest.mock
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, inspect, text
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from eventaudit import db
from eventaudit.audit import chain, migrate, verify
from eventaudit.audit.models import metadata
from eventaudit.audit.store import BUCKET_MICROS, AuditStore, EventFilter, Record
from eventaudit.events import CloudEvent
from tests.integration.audit.logs import (
    drop_refusal,
    event,
    execute,
    open_store,
    refuse_events_of_type,
    refuse_head_updates,
)
from tests.integration.conftest import PG_ADMIN

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
HEAD_REVISION = "0003"


def us(text_time: str) -> int:
    """An RFC 3339 time in microseconds since the epoch, computed without the code under test."""
    return (datetime.fromisoformat(text_time) - EPOCH) // timedelta(microseconds=1)


@pytest.fixture
def store(db_url: str) -> Iterator[AuditStore]:
    with open_store(db_url) as opened:
        yield opened


def everything(store: AuditStore) -> list[Record]:
    return store.find(EventFilter(), limit=1_000_000)


def ids(records: list[Record]) -> list[str]:
    """The CloudEvent ids of ``records``, in their order."""
    return [msgspec.json.decode(record.event)["id"] for record in records]


# --------------------------------------------------------------------------------------------------------------------
# append
# --------------------------------------------------------------------------------------------------------------------


def test_append_assigns_gap_free_increasing_seq_across_calls(store: AuditStore) -> None:
    first = [[event(), event()], [event()]]
    second = [[event()], [], [event(), event(), event()]]

    assert store.append(first) == [[1, 2], [3]]
    assert store.append(second) == [[4], [], [5, 6, 7]]
    assert store.append([]) == []
    assert store.append([[]]) == [[]]

    records = everything(store)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6, 7]
    assert ids(records) == [e.id for group in first + second for e in group]
    assert records[0].recordedtime == records[2].recordedtime  # one append, one recorded time
    assert records[3].recordedtime >= records[2].recordedtime
    assert store.last_seq() == 7
    assert store.count() == 7


def test_append_stores_the_canonical_event(store: AuditStore) -> None:
    stored = event(subject="42", time="2024-01-01T10:00:00+02:00", extensions={"zeta": 1, "alpha": "a"}, data={"b": 1})
    store.append([[stored]])

    [record] = everything(store)
    assert record.event == chain.canonical(stored).decode()


def test_a_duplicate_already_stored_is_not_stored_again(store: AuditStore) -> None:
    original = event(data="first")
    store.append([[original]])

    again = CloudEvent(**{**_attributes(original), "data": "second"})
    assert store.append([[again, event()]]) == [[None, 2]]

    records = everything(store)
    assert [r.seq for r in records] == [1, 2]
    assert '"data":"first"' in records[0].event
    assert store.count() == 2


def test_a_duplicate_within_one_group_is_stored_once(store: AuditStore) -> None:
    twice = event()

    assert store.append([[twice, event(), twice]]) == [[1, 2, None]]
    assert store.count() == 2


def test_a_duplicate_across_groups_of_one_call_is_stored_once(store: AuditStore) -> None:
    twice = event()

    assert store.append([[twice], [event()], [twice, event()]]) == [[1], [2], [None, 3]]
    assert ids(everything(store))[0] == twice.id
    assert store.count() == 3


def test_the_same_id_from_another_source_is_not_a_duplicate(store: AuditStore) -> None:
    one = event(id="shared", source="/a")
    other = event(id="shared", source="/b")

    assert store.append([[one], [other]]) == [[1], [2]]
    assert store.append([[event(id="shared", source="/a"), event(id="shared", source="/c")]]) == [[None, 3]]


def test_dedupe_holds_for_many_keys_at_once(store: AuditStore) -> None:
    batch = [event() for _ in range(1_000)]  # more keys than one lookup query takes
    store.append([batch[:500]])

    result = store.append([batch, [event()]])

    assert result == [[None] * 500 + list(range(501, 1001)), [1001]]


def _attributes(event_: CloudEvent) -> dict[str, Any]:
    return {name: getattr(event_, name) for name in event_.__struct_fields__}


def test_a_group_is_all_or_nothing_when_the_database_refuses_the_chain_head(store: AuditStore) -> None:
    store.append([[event()]])
    before = store.head()
    refuse_head_updates(store.writer)

    with pytest.raises(SQLAlchemyError, match="refused"):
        store.append([[event(), event()], [event()]])

    assert store.count() == 1  # the events were inserted, then rolled back with the failed head update
    assert store.head() == before
    drop_refusal(store.writer, "audit_chain_head")
    assert store.append([[event()]]) == [[2]]  # no gap where the failed call was


def test_a_group_is_all_or_nothing_when_the_database_refuses_a_row_mid_insert(store: AuditStore) -> None:
    refuse_events_of_type(store.writer, "poison")
    kept = [event(), event()]

    with pytest.raises(SQLAlchemyError, match="refused"):
        store.append([kept, [event(), event(type="poison"), event()]])

    assert store.count() == 0
    assert store.head() == (0, chain.GENESIS)
    drop_refusal(store.writer, "audit_events")
    assert store.append([kept]) == [[1, 2]]  # nothing of the failed call counts as stored


@pytest.mark.postgres
def test_a_group_is_all_or_nothing_when_postgres_cuts_the_connection_mid_transaction(pg_url: str) -> None:
    with open_store(pg_url) as store:
        store.append([[event()]])

        def cut_before_the_insert(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("INSERT INTO audit_events"):
                pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
                with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

        sa_event.listen(store.writer, "before_cursor_execute", cut_before_the_insert)
        try:
            with pytest.raises(SQLAlchemyError):
                store.append([[event(), event()]])
        finally:
            sa_event.remove(store.writer, "before_cursor_execute", cut_before_the_insert)

        assert store.count() == 1
        assert store.append([[event()]]) == [[2]]  # the pool replaced the dead connection


# --------------------------------------------------------------------------------------------------------------------
# find
# --------------------------------------------------------------------------------------------------------------------

TIMES = {
    "offset-plus": "2024-01-01T10:00:00+02:00",  # 08:00Z
    "zulu": "2024-01-01T09:00:00Z",
    "offset-minus": "2024-01-01T04:30:00.25-05:00",  # 09:30:00.25Z
    "before-1970": "1969-12-31T23:59:59.5Z",
    "far-future": "9999-12-31T23:59:59.999999Z",
}


@pytest.fixture
def catalogue(store: AuditStore) -> dict[str, int]:
    """Events for every filter, by name -> seq."""
    named: dict[str, CloudEvent] = {
        "created": event(type="user.created", source="/users", subject="u1", time=TIMES["zulu"]),
        "deleted": event(type="user.deleted", source="/users", subject="u2", time=TIMES["offset-plus"]),
        "upper": event(type="USER.created", source="/users", subject="u1", time=TIMES["offset-minus"]),
        "users": event(type="users.created", source="/other", subject="u3"),
        "underscore": event(type="a_b.x", source="/other", time=TIMES["before-1970"]),
        "not-underscore": event(type="aXb.x", source="/other", time=TIMES["far-future"]),
        "percent": event(type="a%b.y", source="/other"),
        "not-percent": event(type="aXXb.y", source="/other"),
        "backslash": event(type="a\\b.z", source="/other"),
    }
    seqs = store.append([[e] for e in named.values()])
    return {name: seq[0] for name, seq in zip(named, seqs, strict=True) if seq[0] is not None}


def seqs_of(store: AuditStore, where: EventFilter, **kwargs: Any) -> list[int]:
    return [r.seq for r in store.find(where, **{"limit": 1000, **kwargs})]


FILTERS: list[tuple[EventFilter, list[str] | None]] = [
    (EventFilter(type="user.created"), ["created"]),
    (EventFilter(type="user.*"), ["created", "deleted"]),  # case-sensitive, and "users." is another prefix
    (EventFilter(type="user*"), ["created", "deleted", "users"]),
    (EventFilter(type="a_b.*"), ["underscore"]),  # "_" is literal
    (EventFilter(type="a%b.*"), ["percent"]),  # "%" is literal
    (EventFilter(type="a\\b.*"), ["backslash"]),
    (EventFilter(type="*"), None),
    (EventFilter(type="nothing.*"), []),
    (EventFilter(source="/users"), ["created", "deleted", "upper"]),
    (EventFilter(subject="u1"), ["created", "upper"]),
    (EventFilter(subject="u1", type="user.*"), ["created"]),
    (EventFilter(source="/other", type="a*"), ["underscore", "not-underscore", "percent", "not-percent", "backslash"]),
    (EventFilter(on="time", since=us(TIMES["zulu"])), ["created", "upper", "not-underscore"]),
    (EventFilter(on="time", until=us(TIMES["zulu"])), ["deleted", "underscore"]),  # until is exclusive
    (EventFilter(on="time", since=us(TIMES["offset-plus"]), until=us(TIMES["offset-minus"])), ["created", "deleted"]),
    (EventFilter(on="time", since=us(TIMES["offset-minus"]), until=us(TIMES["offset-minus"]) + 1), ["upper"]),
    (EventFilter(on="time", since=-500_000, until=-499_999), ["underscore"]),  # before 1970, exactly
    (EventFilter(on="time", since=us(TIMES["far-future"]), until=us(TIMES["far-future"]) + 1), ["not-underscore"]),
]


def test_find_filters(store: AuditStore, catalogue: dict[str, int]) -> None:
    """Every row of ``FILTERS`` (one database for the whole table: creating one per row is slow)."""
    names = {seq: name for name, seq in catalogue.items()}
    wrong = {}
    for where, expected in FILTERS:
        wanted = sorted(catalogue.values()) if expected is None else sorted(catalogue[name] for name in expected)
        found = seqs_of(store, where)
        if found != wanted:
            wrong[repr(where)] = {"found": [names[seq] for seq in found], "wanted": [names[seq] for seq in wanted]}

    assert wrong == {}


def test_find_by_id(store: AuditStore) -> None:
    wanted = event(id="the-one", source="/a")
    store.append([[event(id="other")], [wanted], [event(id="the-one", source="/b")]])

    assert seqs_of(store, EventFilter(id="the-one")) == [2, 3]
    assert [r.event for r in store.find(EventFilter(id="the-one", source="/a"))] == [chain.canonical(wanted).decode()]


def test_find_since_and_until_on_recordedtime(store: AuditStore) -> None:
    store.append([[event(), event()]])
    store.append([[event()]])
    first, _, last = everything(store)
    if first.recordedtime == last.recordedtime:  # same microsecond: make the second call later for sure
        execute(store.writer, "UPDATE audit_events SET recordedtime = recordedtime + 1 WHERE seq = 3")
        last = everything(store)[2]

    assert seqs_of(store, EventFilter(since=last.recordedtime)) == [3]
    assert seqs_of(store, EventFilter(until=last.recordedtime)) == [1, 2]
    assert seqs_of(store, EventFilter(since=first.recordedtime, until=first.recordedtime + 1)) == [1, 2]
    assert seqs_of(store, EventFilter(since=last.recordedtime + 1)) == []


def test_find_order_limit_and_after(store: AuditStore) -> None:
    store.append([[event(type="even" if n % 2 == 0 else "odd") for n in range(1, 11)]])
    odd = EventFilter(type="odd")

    assert seqs_of(store, EventFilter(), limit=3) == [1, 2, 3]
    assert seqs_of(store, EventFilter(), order="desc", limit=3) == [10, 9, 8]
    assert seqs_of(store, EventFilter(), after=8) == [9, 10]
    assert seqs_of(store, EventFilter(), order="desc", after=3) == [2, 1]
    assert seqs_of(store, odd, after=3, limit=2) == [5, 7]
    assert seqs_of(store, odd, order="desc", after=9, limit=2) == [7, 5]
    assert seqs_of(store, odd, after=9) == []
    assert seqs_of(store, EventFilter(), limit=0) == []


def test_paging_with_after_while_a_writer_appends_never_skips_or_repeats(db_url: str) -> None:
    with open_store(db_url) as store:
        batches = [[event(subject=f"{n}-{k}") for k in range(1 + n % 4)] for n in range(150)]
        written = [e.id for batch in batches for e in batch]
        finished = threading.Event()
        failure: list[BaseException] = []

        def write() -> None:
            try:
                for batch in batches:
                    store.append([batch])
            except BaseException as exc:  # surfaced by the reader below
                failure.append(exc)
            finally:
                finished.set()

        writer = threading.Thread(target=write)
        read: list[Record] = []
        pages_while_writing = 0
        writer.start()
        try:
            after = 0
            while True:
                done = finished.is_set()  # before the read: an empty page after the end means the end
                page = store.find(EventFilter(), limit=7, after=after)
                read.extend(page)
                if page:
                    after = page[-1].seq
                    pages_while_writing += not done
                elif done:
                    break
        finally:
            writer.join()

        assert not failure
        assert [r.seq for r in read] == list(range(1, len(written) + 1))
        assert ids(read) == written
        assert pages_while_writing > 1  # the reader really ran alongside the writer


# --------------------------------------------------------------------------------------------------------------------
# iterate, stats, head
# --------------------------------------------------------------------------------------------------------------------


def test_iterate_yields_everything_in_chunks(store: AuditStore) -> None:
    store.append([[event(type="a" if n % 3 else "b") for n in range(25)]])

    chunks = list(store.iterate(EventFilter(), chunk=10))
    assert [len(c) for c in chunks] == [10, 10, 5]
    assert [r.seq for c in chunks for r in c] == list(range(1, 26))

    only_b = list(store.iterate(EventFilter(type="b"), chunk=4))
    assert [len(c) for c in only_b] == [4, 4, 1]
    assert [r.seq for c in only_b for r in c] == [1, 4, 7, 10, 13, 16, 19, 22, 25]
    assert list(store.iterate(EventFilter(), after=25)) == []


def test_stats_on_time_by_minute_hour_and_day(store: AuditStore) -> None:
    day = us("2024-01-01T00:00:00Z")
    minute, hour = BUCKET_MICROS["minute"], BUCKET_MICROS["hour"]
    store.append(
        [
            [
                event(type="a", source="/x", time="2024-01-01T00:00:30Z"),
                event(type="b", source="/x", time="2024-01-01T00:00:45Z"),
                event(type="a", source="/y", time="2024-01-01T02:01:10+01:00"),  # 01:01:10Z
                event(type="a", source="/y", time="2024-01-01T01:59:59.999999Z"),
                event(type="b", source="/x", time="2024-01-02T00:00:00Z"),
                event(type="a", source="/old", time="1969-12-31T23:59:30Z"),
                event(type="a", source="/x"),  # no time: not in stats on time
            ]
        ]
    )

    by_minute = store.stats(EventFilter(on="time"), bucket="minute", by="type")
    assert by_minute == [
        (-minute, "a", 1),
        (day, "a", 1),
        (day, "b", 1),
        (day + hour + minute, "a", 1),
        (day + hour + 59 * minute, "a", 1),
        (day + 24 * hour, "b", 1),
    ]
    by_hour = store.stats(EventFilter(on="time"), bucket="hour", by="source")
    assert by_hour == [(-hour, "/old", 1), (day, "/x", 2), (day + hour, "/y", 2), (day + 24 * hour, "/x", 1)]
    by_day = store.stats(EventFilter(on="time"), bucket="day", by="type")
    assert by_day == [(-24 * hour, "a", 1), (day, "a", 3), (day, "b", 1), (day + 24 * hour, "b", 1)]
    filtered = store.stats(EventFilter(on="time", type="a", since=day), bucket="day", by="source")
    assert filtered == [(day, "/x", 1), (day, "/y", 2)]


def test_stats_on_recordedtime(store: AuditStore) -> None:
    store.append([[event(type="a"), event(type="b"), event(type="a")]])
    store.append([[event(type="b", source="/z")]])
    records = everything(store)

    for bucket in ("minute", "hour", "day"):
        width = BUCKET_MICROS[bucket]
        expected: dict[tuple[int, str], int] = {}
        for record, type_ in zip(records, ["a", "b", "a", "b"], strict=True):
            key = (record.recordedtime // width * width, type_)
            expected[key] = expected.get(key, 0) + 1
        wanted = [(start, type_, n) for (start, type_), n in sorted(expected.items())]
        assert store.stats(EventFilter(), bucket=bucket, by="type") == wanted  # type: ignore[arg-type]
    by_source = store.stats(EventFilter(), bucket="day", by="source")
    assert sorted((source, n) for _, source, n in by_source) == [("/tests", 3), ("/z", 1)]


def test_last_seq_head_and_count(store: AuditStore) -> None:
    assert store.last_seq() == 0
    assert store.head() == (0, chain.GENESIS)
    assert store.count() == 0

    store.append([[event(), event()], [event(), event()]])
    store.append([[event()]])

    previous = chain.GENESIS
    for record in everything(store):
        previous = chain.link(previous, record.seq, record.recordedtime, record.event.encode())
    assert store.head() == (5, previous)
    assert store.last_seq() == 5
    assert store.count() == 5
    store.ping()


def test_walk_reads_one_snapshot(store: AuditStore) -> None:
    store.append([[event() for _ in range(5)]])

    with store.walk(chunk=2) as log:
        first = next(log.chunks)
        store.append([[event(), event()]])  # committed while the walk is under way
        rest = [row for chunk in log.chunks for row in chunk]

    assert (log.head_seq, log.head_hash) != store.head()
    assert log.head_seq == 5
    assert [row[0] for row in first + rest] == [1, 2, 3, 4, 5]
    assert store.count() == 7


# --------------------------------------------------------------------------------------------------------------------
# schema
# --------------------------------------------------------------------------------------------------------------------


def test_migrations_are_idempotent_and_match_the_models(store: AuditStore) -> None:
    store.append([[event()]])

    migrate.upgrade(store.writer)
    migrate.upgrade(store.writer)

    assert store.count() == 1
    with store.writer.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version_audit")).scalars().all() == [HEAD_REVISION]
        assert (
            compare_metadata(
                MigrationContext.configure(conn, opts={"version_table": "alembic_version_audit"}), metadata
            )
            == []
        )
        tables = set(inspect(conn).get_table_names())
    assert {"audit_events", "audit_chain_head", "alembic_version_audit"} <= tables


def test_migration_0002_keeps_every_stored_event_and_its_chain(db_url: str) -> None:
    # A log written under the first schema (unique (source, id), an index on id, on SQLite a separate
    # index on seq), then upgraded: the rows move unchanged, verify still passes, dedupe still holds.
    writer, reader = db.create(db_url, writer=True), db.create(db_url)
    try:
        migrate.upgrade(writer, "0001")
        old = AuditStore(writer, reader)
        stored = [[event(id=f"e{n}", source=f"/s{n % 3}") for n in range(250)]]
        assert old.append(stored) == [list(range(1, 251))]
        before = [(r.seq, r.recordedtime, r.event) for r in everything(old)]
        head_before = old.head()

        migrate.upgrade(writer)

        store = AuditStore(writer, reader)
        assert [(r.seq, r.recordedtime, r.event) for r in everything(store)] == before
        assert store.head() == head_before
        assert verify.verify(store).ok
        assert store.append([[event(id="e7", source="/s1"), event(id="e7", source="/other")]]) == [[None, 251]]
        with writer.connect() as conn:
            assert (
                compare_metadata(
                    MigrationContext.configure(conn, opts={"version_table": "alembic_version_audit"}), metadata
                )
                == []
            )
            indexed = {tuple(ix["column_names"]) for ix in inspect(conn).get_indexes("audit_events")}
            unique = {tuple(uq["column_names"]) for uq in inspect(conn).get_unique_constraints("audit_events")}
            if writer.dialect.name == "sqlite":  # seq is the rowid: no index of its own
                assert conn.execute(text("SELECT count(*) FROM audit_events WHERE rowid != seq")).scalar() == 0
        assert ("id",) not in indexed
        assert unique == {("id", "source")}

        after = [(r.seq, r.recordedtime, r.event) for r in everything(store)]
        migrate.downgrade(writer, "0001")  # and back, for an operator who must
        assert [(r.seq, r.recordedtime, r.event) for r in everything(AuditStore(writer, reader))] == after
        assert verify.verify(AuditStore(writer, reader)).ok
        with writer.connect() as conn:
            assert {tuple(uq["column_names"]) for uq in inspect(conn).get_unique_constraints("audit_events")} == {
                ("source", "id")
            }
            assert ("id",) in {tuple(ix["column_names"]) for ix in inspect(conn).get_indexes("audit_events")}
    finally:
        writer.dispose()
        reader.dispose()


def test_every_filter_of_the_read_api_has_an_index_that_starts_with_its_column(store: AuditStore) -> None:
    # system.md, Storage: "the event's attributes as columns (with an index per filter)". GET /v1/events
    # filters on type, source, subject, id, and time or recordedtime (the time filter is on time_us).
    with store.writer.connect() as conn:
        inspector = inspect(conn)
        leading = {ix["column_names"][0] for ix in inspector.get_indexes("audit_events")}
        leading |= {uq["column_names"][0] for uq in inspector.get_unique_constraints("audit_events")}
    filtered = {"type", "source", "subject", "id", "time_us", "recordedtime"}
    assert filtered - leading == set()


def test_a_source_filter_searches_an_index_instead_of_scanning_the_log(tmp_path: Any) -> None:
    # SQLite's plan for the read API's query: before 0003 it was "SCAN audit_events", the whole log.
    with open_store(f"sqlite:///{tmp_path}/plan.db") as store:
        store.append([[event(id=f"e{n}", source=f"/s{n % 5}") for n in range(500)]])
        with store.writer.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
            query = "SELECT seq FROM audit_events WHERE source = '/s3' ORDER BY seq LIMIT 50"
            plan = [row[-1] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")]
    assert any("ix_audit_events_source" in step for step in plan), plan
    assert not any(step.startswith("SCAN audit_events") for step in plan), plan


def test_the_schema_refuses_a_second_row_with_the_same_source_and_id(store: AuditStore) -> None:
    store.append([[event(id="x", source="/s")]])
    columns = (
        "seq, recordedtime, specversion, id, source, type, extensions, event, hash",
        ":seq, 1, '1.0', 'x', :source, 't', '{}', '{}', :hash",
    )
    insert = f"INSERT INTO audit_events ({columns[0]}) VALUES ({columns[1]})"

    execute(store.writer, insert, seq=2, source="/other", hash=bytes(32))  # another source: allowed
    with pytest.raises(IntegrityError):
        execute(store.writer, insert, seq=3, source="/s", hash=bytes(32))
    assert store.count() == 2


def test_the_schema_refuses_a_second_row_with_the_same_seq(store: AuditStore) -> None:
    store.append([[event()]])
    with pytest.raises(IntegrityError):
        execute(
            store.writer,
            "INSERT INTO audit_events (seq, recordedtime, specversion, id, source, type, extensions, event, hash) "
            "VALUES (1, 1, '1.0', 'new', '/s', 't', '{}', '{}', :hash)",
            hash=bytes(32),
        )


def test_concurrent_migrations_of_a_new_database_all_succeed(db_url: str) -> None:
    engines = [db.create(db_url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    failures: list[BaseException] = []

    def upgrade(engine: Engine) -> None:
        start.wait()
        try:
            migrate.upgrade(engine)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=upgrade, args=(engine,), daemon=True) for engine in engines]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)  # unserialized, they can wait on each other for ever
        assert not any(thread.is_alive() for thread in threads)
        assert failures == []
        with engines[0].connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version_audit")).scalars().all()
            assert versions == [HEAD_REVISION]
            assert conn.execute(text("SELECT seq FROM audit_chain_head")).scalars().all() == [0]
    finally:
        for engine in engines:
            engine.dispose()


# --------------------------------------------------------------------------------------------------------------------
# append on SQLite goes straight to sqlite3: held to the SQLAlchemy Core path (append_core) as its oracle
# --------------------------------------------------------------------------------------------------------------------

_oracle_events = st.builds(
    lambda source, id_, subject, time_, data, extensions: CloudEvent.create(
        type="user.created",
        source=source,
        id=id_,
        subject=subject,
        time=time_,
        data=data,
        extensions=extensions,
    ),
    source=st.sampled_from(["/a", "/b", "urn:x"]),
    id_=st.sampled_from(["1", "2", "3", "4", "é"]),  # few: duplicates within a group, across groups and calls
    subject=st.none() | st.text(min_size=1, max_size=5).filter(str.isprintable),
    time_=st.none() | st.just("2026-11-27T10:00:00.123456Z") | st.just("1969-12-31T23:59:59+01:00"),
    data=st.none() | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2) | st.binary(max_size=4),
    extensions=st.dictionaries(
        st.sampled_from(["partitionkey", "traceparent", "n"]), st.text(alphabet="az09 -é", max_size=4), max_size=2
    ),
)


@settings(max_examples=60, deadline=None)
@given(calls=st.lists(st.lists(st.lists(_oracle_events, max_size=4), max_size=3), min_size=1, max_size=5))
def test_sqlite_append_matches_the_core_path(calls: list[list[list[CloudEvent]]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        fast, core = (db.create(f"sqlite:///{folder}/{name}.db", writer=True) for name in ("fast", "core"))
        try:
            for engine in (fast, core):
                migrate.upgrade(engine)
            fast_store, core_store = AuditStore(fast), AuditStore(core)
            for number, groups in enumerate(calls):
                with unittest.mock.patch("eventaudit.audit.store.time.time_ns", return_value=10**15 + number):
                    assert fast_store.append(groups) == core_store.append_core(groups)
            assert fast_store.head() == core_store.head()
            with fast_store.walk() as fast_log, core_store.walk() as core_log:
                assert [row for chunk in fast_log.chunks for row in chunk] == [
                    row for chunk in core_log.chunks for row in chunk
                ]
        finally:
            fast.dispose()
            core.dispose()


def test_sqlite_append_failures_are_database_errors_and_store_nothing(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        store.append([[event()]])
        holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            db.bound_lock_waits(store.writer, 0.05)
            store.writer.dispose()  # the next connection waits 50 ms at most
            with pytest.raises(OperationalError, match="locked"):
                store.append([[event()]])
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.append([[event()]]) == [[2]]
        assert store.count() == 2
