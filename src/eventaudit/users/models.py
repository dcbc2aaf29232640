"""The users service's tables (SQLAlchemy Core). Migrations in ``migrations/`` create them.

Times are microseconds since the epoch, UTC, as in the audit log.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

#: One row per user. ``sequence`` is the number of changes the user has had: the ``sequence``
#: of its newest event.
users = Table(
    "users",
    metadata,
    Column("id", String(36), primary_key=True),  # a UUID in its canonical, lower-case text form
    Column("name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),  # argon2id, PHC string
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Index("ix_users_created_at_id", "created_at", "id"),
)

PENDING, SENT, PARKED = "pending", "sent", "parked"

#: One row per event, written in the transaction of the change it tells about. ``position`` is the
#: order rows were written in; one user's rows are written one transaction after the other (the
#: user row is locked), so for one user ``position`` and ``sequence`` follow commit order.
outbox = Table(
    "outbox",
    metadata,
    Column("position", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("user_id", String(36), nullable=False),  # the partition key
    Column("sequence", BigInteger, nullable=False),
    Column("event", Text, nullable=False),  # the JSON event format, stored once
    Column("created_at", BigInteger, nullable=False),
    Column("state", String(8), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", BigInteger, nullable=False),
    Column("last_error", Text),
    Column("sent_at", BigInteger),
    Column("lease_owner", String(36)),
    Column("lease_until", BigInteger),
    CheckConstraint("state IN ('pending', 'sent', 'parked')", name="ck_outbox_state"),
    Index("ix_outbox_state_position", "state", "position"),
    Index("ix_outbox_user_sequence", "user_id", "sequence", unique=True),
    Index("ix_outbox_state_user_sequence", "state", "user_id", "sequence"),
)
