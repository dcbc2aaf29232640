"""The relay's claim on SQLite and PostgreSQL: each user only through its head, runs in order, leases respected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, update

from eventaudit import db
from eventaudit.users import migrate, repository
from eventaudit.users.models import SENT, outbox

NOW = 1_000_000_000


@pytest.fixture
def engine(users_db: str) -> Iterator[Engine]:
    engine = db.create(users_db, writer=True)
    migrate.upgrade(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def add(engine: Engine, *events: tuple[str, int]) -> None:
    """Outbox rows for ``(user, sequence)`` pairs, in this order of position."""
    with engine.begin() as conn:
        for user, sequence in events:
            repository.add_event(conn, user, sequence, f'{{"user":"{user}","n":{sequence}}}', NOW)


def change(engine: Engine, user: str, sequence: int, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.user_id == user, outbox.c.sequence == sequence).values(**values))


def claim(engine: Engine, limit: int = 100, owner: str = "r1") -> list[tuple[str, int]]:
    with engine.begin() as conn:
        rows = repository.claim(conn, owner, NOW, NOW + 60_000_000, limit)
    return [(row.user_id, row.sequence) for row in rows]


def test_each_user_is_taken_through_its_head_and_its_due_run_in_order(engine: Engine) -> None:
    add(engine, ("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("d", 1), ("c", 2), ("d", 2), ("e", 1), ("e", 2))
    change(engine, "b", 1, next_attempt_at=NOW + 1)  # b's head waits for a retry: b's next event must wait too
    change(engine, "c", 1, state=SENT)  # c's first is sent: its second is c's head now
    change(engine, "d", 2, next_attempt_at=NOW + 1)  # d's run ends before its second event
    change(engine, "e", 1, lease_owner="r2", lease_until=NOW + 1)  # another relay holds e

    assert claim(engine) == [("a", 1), ("a", 2), ("d", 1), ("c", 2)]
    assert claim(engine) == []  # all leased now; nothing is taken twice


def test_the_limit_counts_events_and_heads_come_by_position(engine: Engine) -> None:
    add(engine, ("x", 1), ("y", 1), ("x", 2), ("x", 3), ("y", 2), ("z", 1))

    assert claim(engine, limit=3) == [("x", 1), ("y", 1), ("x", 2)]
    # x and y are held by r1 through their heads (x3 and y2 wait for r1); z's head is free
    assert claim(engine, limit=3, owner="r2") == [("z", 1)]


def test_an_expired_lease_is_claimed_again(engine: Engine) -> None:
    add(engine, ("u", 1), ("u", 2))
    change(engine, "u", 1, lease_owner="gone", lease_until=NOW - 1)
    change(engine, "u", 2, lease_owner="gone", lease_until=NOW - 1)

    assert claim(engine) == [("u", 1), ("u", 2)]
