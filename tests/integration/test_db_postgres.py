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
