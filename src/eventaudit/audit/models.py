"""The audit log's tables (SQLAlchemy Core). Migrations in ``migrations/`` create them."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, MetaData, String, Table, Text, UniqueConstraint

metadata = MetaData()

#: One row per stored event. ``event`` is the canonical JSON format of the event, the
#: bytes the hash chain covers; the other attribute columns are derived from it for
#: filtering (``eventaudit verify`` checks they still agree).
events = Table(
    "audit_events",
    metadata,
    # On SQLite the rowid itself (INTEGER PRIMARY KEY): one B-tree fewer per row.
    Column("seq", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False),
    Column("recordedtime", BigInteger, nullable=False),  # microseconds since the epoch, UTC
    Column("specversion", String(16), nullable=False),
    Column("id", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("subject", Text),
    Column("time", Text),  # as received
    Column("time_us", BigInteger),  # the same instant, for filtering
    Column("datacontenttype", Text),
    Column("dataschema", Text),
    Column("extensions", Text, nullable=False),  # JSON object, as received
    Column("event", Text, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
    # Id first: the duplicate check and the id filter both look up by id, so no separate index on id.
    UniqueConstraint("id", "source", name="uq_audit_events_id_source"),
    Index("ix_audit_events_type", "type"),
    Index("ix_audit_events_source", "source"),
    Index("ix_audit_events_subject", "subject"),
    Index("ix_audit_events_time_us", "time_us"),
    Index("ix_audit_events_recordedtime", "recordedtime"),
)

#: The end of the chain: one row (``id`` = 1) with the last ``seq`` and its hash.
#: Appenders lock it, so seq stays gap-free and in commit order across processes.
chain_head = Table(
    "audit_chain_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", LargeBinary(32), nullable=False),
)
