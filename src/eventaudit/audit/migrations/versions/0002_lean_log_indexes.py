"""Fewer B-trees per appended event: one unique index serves the duplicate check and the id filter.

Revision ID: 0002
Revises: 0001

* ``UNIQUE (id, source)`` replaces ``UNIQUE (source, id)`` plus the index on ``id``: the duplicate
  check and ``GET /v1/events?id=`` both look up by id first, so the one index answers both.
* On SQLite, ``seq`` becomes ``INTEGER PRIMARY KEY``: the table's own rowid, instead of a rowid and
  a separate index on seq. SQLite cannot change a primary key in place, so the table is rebuilt
  (one ``INSERT … SELECT`` in this migration's transaction; the chain's bytes are copied as they are).

Each event then costs five B-tree inserts on SQLite instead of eight (measured on 1 KB events in
batches of 5,000, durable: about 25% less time per row).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_INDEXED = ("type", "subject", "time_us", "recordedtime")


def _columns(seq_type: sa.types.TypeEngine[int]) -> list[sa.Column[object]]:
    return [
        sa.Column("seq", seq_type, primary_key=True, autoincrement=False),
        sa.Column("recordedtime", sa.BigInteger, nullable=False),
        sa.Column("specversion", sa.String(16), nullable=False),
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("subject", sa.Text),
        sa.Column("time", sa.Text),
        sa.Column("time_us", sa.BigInteger),
        sa.Column("datacontenttype", sa.Text),
        sa.Column("dataschema", sa.Text),
        sa.Column("extensions", sa.Text, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    ]


def _rebuild_sqlite(seq_type: sa.types.TypeEngine[int], unique: tuple[str, str], indexed: tuple[str, ...]) -> None:
    names = [column.name for column in _columns(seq_type)]
    op.create_table(
        "audit_events_rebuilt",
        *_columns(seq_type),
        sa.UniqueConstraint(*unique, name=f"uq_audit_events_{unique[0]}_{unique[1]}"),
    )
    old = sa.table("audit_events", *(sa.column(name) for name in names))
    rebuilt = sa.table("audit_events_rebuilt", *(sa.column(name) for name in names))
    op.execute(rebuilt.insert().from_select(names, sa.select(*old.c).order_by(old.c.seq)))
    op.drop_table("audit_events")
    op.rename_table("audit_events_rebuilt", "audit_events")
    for column in indexed:
        op.create_index(f"ix_audit_events_{column}", "audit_events", [column])


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(sa.Integer(), ("id", "source"), _INDEXED)
        return
    op.create_unique_constraint("uq_audit_events_id_source", "audit_events", ["id", "source"])
    op.drop_constraint("uq_audit_events_source_id", "audit_events", type_="unique")
    op.drop_index("ix_audit_events_id", "audit_events")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(sa.BigInteger(), ("source", "id"), (*_INDEXED, "id"))
        return
    op.create_index("ix_audit_events_id", "audit_events", ["id"])
    op.create_unique_constraint("uq_audit_events_source_id", "audit_events", ["source", "id"])
    op.drop_constraint("uq_audit_events_id_source", "audit_events", type_="unique")
