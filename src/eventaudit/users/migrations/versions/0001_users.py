"""Users and their outbox.

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
        "users",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_users_created_at_id", "users", ["created_at", "id"])
    op.create_table(
        "outbox",
        sa.Column("position", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("sequence", sa.BigInteger, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("sent_at", sa.BigInteger),
        sa.Column("lease_owner", sa.String(36)),
        sa.Column("lease_until", sa.BigInteger),
        sa.CheckConstraint("state IN ('pending', 'sent', 'parked')", name="ck_outbox_state"),
    )
    op.create_index("ix_outbox_state_position", "outbox", ["state", "position"])
    op.create_index("ix_outbox_user_sequence", "outbox", ["user_id", "sequence"], unique=True)
    op.create_index("ix_outbox_state_user_sequence", "outbox", ["state", "user_id", "sequence"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("users")
