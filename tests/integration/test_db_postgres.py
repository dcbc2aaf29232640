"""Engine settings that only a PostgreSQL server can show."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from eventaudit import db


@pytest.mark.postgres
def test_relaxed_durability_turns_off_synchronous_commit_on_postgres(pg_url: str) -> None:
    relay, users = db.create(pg_url, writer=True), db.create(pg_url, writer=True)
    db.relax_durability(relay)
    try:
        with relay.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "off"
        with users.connect() as conn:
            assert conn.execute(text("SHOW synchronous_commit")).scalar_one() == "on"
    finally:
        relay.dispose()
        users.dispose()


@pytest.mark.postgres
def test_statements_are_planned_for_the_table_as_it_is_not_prepared_once(pg_url: str) -> None:
    """A plan prepared while a table was empty stays a sequential scan as the table grows (seen on the audit log)."""
    engine = db.create(pg_url, writer=True)
    try:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            assert raw.prepare_threshold is None
            for _ in range(8):  # more than psycopg's default threshold of 5
                conn.execute(text("SELECT 1 WHERE 1 = :x"), {"x": 1})
            assert conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar_one() == 0
    finally:
        engine.dispose()
