"""The audit log: events with their hash chain, and the chain head.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
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
        sa.UniqueConstraint("source", "id", name="uq_audit_events_source_id"),
    )
    for column in ("type", "subject", "time_us", "recordedtime", "id"):
        op.create_index(f"ix_audit_events_{column}", "audit_events", [column])
    op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.LargeBinary(32), nullable=False),
    )
    op.execute(sa.text("INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, :zero)").bindparams(zero=bytes(32)))


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    op.drop_table("audit_events")
