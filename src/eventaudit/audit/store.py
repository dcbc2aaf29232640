"""The audit log's queries: append (dedupe + chain), find, export, stats, walk. SQL lives here only."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import msgspec
from sqlalchemy import Connection, Engine, bindparam, func, insert, select, text, update
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.elements import BindParameter, ColumnElement

from eventaudit import db
from eventaudit.audit import chain
from eventaudit.audit.models import chain_head, events
from eventaudit.events import CloudEvent, types

Order = Literal["asc", "desc"]
TimeField = Literal["time", "recordedtime"]
Bucket = Literal["minute", "hour", "day"]
GroupBy = Literal["type", "source"]

BUCKET_MICROS: dict[str, int] = {"minute": 60_000_000, "hour": 3_600_000_000, "day": 86_400_000_000}
#: The columns :meth:`AuditStore.walk` yields, in this order.
WALK_COLUMNS: Final = (
    "seq",
    "recordedtime",
    "hash",
    "event",
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "time_us",
    "datacontenttype",
    "dataschema",
    "extensions",
)
#: The columns of a row as :func:`_chain` builds it: the table's own order (``INSERT`` without names).
ROW_COLUMNS: Final = tuple(column.name for column in events.columns)
_KEY_CHUNK = 400
_sorted_encoder = msgspec.json.Encoder(order="sorted")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(frozen=True)
class EventFilter:
    """What to select. ``type`` ending in ``*`` is a prefix (``user.*``); times are µs since the epoch."""

    type: str | None = None
    source: str | None = None
    subject: str | None = None
    id: str | None = None
    since: int | None = None
    until: int | None = None
    on: TimeField = "recordedtime"

    def clauses(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses of this filter."""
        where: list[ColumnElement[bool]] = []
        if self.type is not None:
            if self.type.endswith("*"):
                prefix = self.type[:-1]
                escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                where.append(events.c.type.like(escaped + "%", escape="\\"))
                # SQLite's LIKE ignores the case of ASCII letters; types are case-sensitive.
                where.append(func.substr(events.c.type, 1, len(prefix)) == prefix)
            else:
                where.append(events.c.type == self.type)
        for name in ("source", "subject", "id"):
            value = getattr(self, name)
            if value is not None:
                where.append(events.c[name] == value)
        column = events.c.time_us if self.on == "time" else events.c.recordedtime
        if self.since is not None:
            where.append(column >= self.since)
        if self.until is not None:
            where.append(column < self.until)
        return where


@dataclass(frozen=True)
class Record:
    """One stored event as the read API serves it: ``event`` is the canonical JSON text."""

    seq: int
    recordedtime: int
    event: str


class AuditStore:
    """Queries on the audit tables; ``writer`` appends, ``reader`` serves the reads."""

    def __init__(self, writer: Engine, reader: Engine | None = None) -> None:
        self.writer = writer
        self.reader = reader or writer
        self._sqlite = db.is_sqlite(writer)
        self._look_up_duplicates = False  # see _append_sqlite

    def append(self, groups: Sequence[Sequence[CloudEvent]]) -> list[list[int | None]]:
        """Store every new event of ``groups`` in one transaction, in order.

        Returns, per group and event, the ``seq`` it got, or ``None`` for a duplicate
        ``(source, id)`` (already stored, or earlier in the same call). The chain head
        is locked for the transaction, so seq is gap-free and follows commit order even
        with several writers.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing of ``groups`` was stored.
        """
        if self._sqlite:
            return self._append_sqlite(groups)
        return self.append_core(groups)

    def append_core(self, groups: Sequence[Sequence[CloudEvent]]) -> list[list[int | None]]:
        """:meth:`append` through SQLAlchemy Core, on any database: the reference for the SQLite path."""
        with self.writer.begin() as conn:
            head = conn.execute(
                select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1).with_for_update()
            ).one()
            seen = self._existing(conn, {(e.source, e.id) for group in groups for e in group})
            chained = _chain(groups, seen, int(head.seq), bytes(head.hash))
            if chained.rows:
                conn.execute(insert(events), [dict(zip(ROW_COLUMNS, row, strict=True)) for row in chained.rows])
                conn.execute(update(chain_head).where(chain_head.c.id == 1).values(seq=chained.seq, hash=chained.head))
        return chained.results

    def _append_sqlite(self, groups: Sequence[Sequence[CloudEvent]]) -> list[list[int | None]]:
        # The same statements as append_core, straight on the sqlite3 connection: SQLAlchemy's
        # per-row parameter processing and its per-transaction events cost more than the inserts.
        # Optimistic about duplicates: no lookup first; UNIQUE (id, source) refuses a stored one, and
        # then the transaction starts over with the lookup. After such a refusal the lookups go on until
        # one finds no duplicate (a redelivered stretch is refused once, not once per commit).
        raw = self.writer.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    try:
                        chained = self._insert_sqlite(cursor, groups, look_up=self._look_up_duplicates)
                    except sqlite3.IntegrityError:
                        if self._look_up_duplicates:
                            raise
                        cursor.execute("ROLLBACK")
                        cursor.execute("BEGIN IMMEDIATE")
                        chained = self._insert_sqlite(cursor, groups, look_up=True)
                    cursor.execute("COMMIT")
                except BaseException:
                    if raw.driver_connection.in_transaction:  # type: ignore[union-attr]
                        cursor.execute("ROLLBACK")
                    raise
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise DBAPIError.instance("append", None, exc, sqlite3.Error) from exc
        finally:
            raw.close()
        return chained.results

    def _insert_sqlite(self, cursor: Any, groups: Sequence[Sequence[CloudEvent]], *, look_up: bool) -> _Chained:
        seq, previous = cursor.execute(str(_SQLITE_HEAD), _SQLITE_HEAD.params).fetchone()
        stored: set[tuple[str, str]] = set()
        if look_up:
            stored = _sqlite_existing(cursor, {(e.source, e.id) for group in groups for e in group})
        chained = _chain(groups, stored, int(seq), bytes(previous))
        if chained.rows:
            cursor.executemany(_SQLITE_INSERT, chained.rows)
            cursor.execute(
                str(_SQLITE_MOVE_HEAD), {**_SQLITE_MOVE_HEAD.params, "seq": chained.seq, "hash": chained.head}
            )
        self._look_up_duplicates = bool(stored)
        return chained

    @staticmethod
    def _existing(conn: Connection, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
        # Per source, `source = ? AND id IN (…)`: the UNIQUE (id, source) index answers it alone. (SQLite
        # scans the whole table for a (source, id) IN (VALUES …); PostgreSQL, before its statistics know
        # a fast-growing table, chose a sequential scan for `id IN (…)`: each batch cost O(log size).)
        found: set[tuple[str, str]] = set()
        by_source: dict[str, list[str]] = {}
        for source, id_ in keys:
            by_source.setdefault(source, []).append(id_)
        for source, ids in by_source.items():
            ids.sort()
            for start in range(0, len(ids), _KEY_CHUNK):
                chunk = ids[start : start + _KEY_CHUNK]
                query = select(events.c.source, events.c.id).where(events.c.source == source, events.c.id.in_(chunk))
                found.update((row.source, row.id) for row in conn.execute(query))
        return found

    def find(
        self, where: EventFilter, *, order: Order = "asc", limit: int = 50, after: int | None = None
    ) -> list[Record]:
        """Up to ``limit`` events matching ``where``, by seq, strictly after the ``after`` seq."""
        query = select(events.c.seq, events.c.recordedtime, events.c.event).where(*where.clauses())
        if after is not None:
            query = query.where(events.c.seq > after if order == "asc" else events.c.seq < after)
        query = query.order_by(events.c.seq.asc() if order == "asc" else events.c.seq.desc()).limit(limit)
        with self.reader.connect() as conn:
            return [Record(row.seq, row.recordedtime, row.event) for row in conn.execute(query)]

    def iterate(self, where: EventFilter, *, after: int = 0, chunk: int = 1000) -> Iterator[list[Record]]:
        """Every event matching ``where`` in seq order, a chunk at a time (constant memory)."""
        while True:
            records = self.find(where, order="asc", limit=chunk, after=after)
            if not records:
                return
            yield records
            after = records[-1].seq

    def stats(self, where: EventFilter, *, bucket: Bucket, by: GroupBy) -> list[tuple[int, str, int]]:
        """``(bucket start µs, type or source, count)`` per bucket, oldest first."""
        width = BUCKET_MICROS[bucket]
        column = events.c.time_us if where.on == "time" else events.c.recordedtime
        # Floor to the bucket, also before 1970: SQL's % keeps the sign of the dividend.
        start = (column - (column % width + width) % width).label("start")
        key = events.c[by].label("key")
        query = (
            select(start, key, func.count().label("n"))
            .where(*where.clauses(), column.is_not(None))
            .group_by(start, key)
            .order_by(start, key)
        )
        with self.reader.connect() as conn:
            return [(int(row.start), row.key, int(row.n)) for row in conn.execute(query)]

    def last_seq(self) -> int:
        """The seq of the newest stored event, 0 when the log is empty."""
        with self.reader.connect() as conn:
            return int(conn.execute(select(chain_head.c.seq).where(chain_head.c.id == 1)).scalar_one())

    def head(self) -> tuple[int, bytes]:
        """The chain head: the last seq and its hash."""
        with self.reader.connect() as conn:
            row = conn.execute(select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)).one()
            return int(row.seq), bytes(row.hash)

    @contextmanager
    def walk(self, *, chunk: int = 10_000) -> Iterator[LogSnapshot]:
        """The chain head and every row of the log, as of one moment (one read transaction).

        The rows come in seq order as plain tuples of :data:`WALK_COLUMNS`, ``chunk`` at a
        time, from a server-side cursor on PostgreSQL: memory stays constant however long
        the log, and events appended meanwhile are not part of the snapshot.
        """
        with self.reader.connect() as conn, db.read_snapshot(conn).begin():
            head = conn.execute(select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)).one()
            cursor = _plain_cursor(conn)
            try:
                query = select(*(events.c[name] for name in WALK_COLUMNS)).order_by(events.c.seq)
                cursor.execute(str(query.compile(dialect=conn.dialect)))
                yield LogSnapshot(int(head.seq), bytes(head.hash), _fetch(cursor, chunk))
            finally:
                cursor.close()

    def count(self) -> int:
        """How many events are stored."""
        with self.reader.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    def ping(self) -> None:
        """Raise unless the database answers."""
        with self.reader.connect() as conn:
            conn.execute(text("SELECT 1"))


@dataclass
class _Chained:
    rows: list[tuple[Any, ...]]  # in ROW_COLUMNS order
    results: list[list[int | None]]
    seq: int
    head: bytes


def _chain(groups: Sequence[Sequence[CloudEvent]], seen: set[tuple[str, str]], seq: int, head: bytes) -> _Chained:
    """The rows that extend the chain from ``(seq, head)`` with the events of ``groups`` not in ``seen``."""
    seen = set(seen)
    recordedtime = time.time_ns() // 1000
    rows: list[tuple[Any, ...]] = []
    results: list[list[int | None]] = []
    for group in groups:
        outcome: list[int | None] = []
        for event in group:
            key = (event.source, event.id)
            if key in seen:
                outcome.append(None)
                continue
            seen.add(key)
            seq += 1
            canonical = chain.canonical(event)
            head = chain.link(head, seq, recordedtime, canonical)
            rows.append(_row(event, seq, recordedtime, canonical, head))
            outcome.append(seq)
        results.append(outcome)
    return _Chained(rows, results, seq, head)


# The statements of append_core, compiled once by SQLAlchemy for sqlite3 (the insert takes tuples in ROW_COLUMNS order).
_SQLITE: Final = sqlite_dialect.dialect(paramstyle="named")
_SQLITE_QMARK: Final = sqlite_dialect.dialect(paramstyle="qmark")
_SQLITE_HEAD: Final = select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1).compile(dialect=_SQLITE)
_SQLITE_INSERT: Final = str(insert(events).compile(dialect=_SQLITE_QMARK))
_SQLITE_MOVE_HEAD: Final = (
    update(chain_head)
    .where(chain_head.c.id == 1)
    .values(seq=bindparam("seq"), hash=bindparam("hash"))
    .compile(dialect=_SQLITE)
)


@functools.lru_cache(maxsize=_KEY_CHUNK)
def _sqlite_existing_query(count: int) -> str:
    ids: list[BindParameter[str]] = [bindparam(f"id{n}") for n in range(count)]
    query = select(events.c.source, events.c.id).where(events.c.id.in_(ids))
    return str(query.compile(dialect=_SQLITE_QMARK))


def _sqlite_existing(cursor: Any, keys: set[tuple[str, str]]) -> set[tuple[str, str]]:
    # By id through its index, as AuditStore._existing does; positional parameters (named ones cost
    # a formatted name and a lookup per id).
    found: set[tuple[str, str]] = set()
    ids = sorted({id_ for _source, id_ in keys})
    for start in range(0, len(ids), _KEY_CHUNK):
        chunk = ids[start : start + _KEY_CHUNK]
        found.update(key for key in cursor.execute(_sqlite_existing_query(len(chunk)), chunk) if key in keys)
    return found


@dataclass(frozen=True)
class LogSnapshot:
    """What :meth:`AuditStore.walk` reads: the chain head, and the rows (tuples of :data:`WALK_COLUMNS`)."""

    head_seq: int
    head_hash: bytes
    chunks: Iterator[list[tuple[Any, ...]]]


def _plain_cursor(conn: Connection) -> Any:
    driver = conn.connection.driver_connection
    if conn.dialect.name == "postgresql":
        return driver.cursor(name="eventaudit_walk")  # type: ignore[union-attr]
    return driver.cursor()  # type: ignore[union-attr]


def _fetch(cursor: Any, chunk: int) -> Iterator[list[tuple[Any, ...]]]:
    while rows := cursor.fetchmany(chunk):
        yield rows


def derived_columns(event: CloudEvent) -> dict[str, Any]:
    """The filter columns of a row, as they follow from its event."""
    return dict(zip(ROW_COLUMNS[2:-2], _derived(event), strict=True))


def _derived(event: CloudEvent) -> tuple[Any, ...]:
    time_ = event.time
    return (
        event.specversion,
        event.id,
        event.source,
        event.type,
        event.subject,
        time_,
        None if time_ is None else types.timestamp_micros(time_),
        event.datacontenttype,
        event.dataschema,
        extensions_text(event.extensions),
    )


def extensions_text(extensions: Mapping[str, Any]) -> str:
    """The ``extensions`` column: a JSON object, members sorted (binary values in Base64)."""
    return _sorted_encoder.encode(extensions).decode() if extensions else "{}"


def _row(event: CloudEvent, seq: int, recordedtime: int, canonical: bytes, digest: bytes) -> tuple[Any, ...]:
    # The hash as a bytearray: sqlite3 binds one as it is, while a bytes value goes through its adapter
    # lookup first (~1.3 µs a row, where a bytearray costs 0.26 µs); stored and read back as the same BLOB.
    return (seq, recordedtime, *_derived(event), canonical.decode(), bytearray(digest))


def micros(stamp: datetime) -> int:
    """``stamp`` (timezone-aware) in whole microseconds since the epoch, exactly."""
    return (stamp - _EPOCH) // _MICROSECOND
