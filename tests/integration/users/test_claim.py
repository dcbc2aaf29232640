"""The relay's claim on SQLite and PostgreSQL: each user only through its head, runs in order, leases respected."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, update

from eventaudit import db
from eventaudit.users import migrate, repository
from eventaudit.users.models import PARKED, SENT, outbox

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


def test_a_due_head_with_a_waiting_follower_ends_its_run_there(engine: Engine) -> None:
    add(engine, ("a", 1), ("a", 2), ("b", 1), ("a", 3))
    change(engine, "a", 2, next_attempt_at=NOW + 1)

    assert claim(engine) == [("a", 1), ("b", 1)]


# --------------------------------------------------------------------------------------------------------------------
# held to a model of the rule, on random outboxes
# --------------------------------------------------------------------------------------------------------------------

# Each event: (user, pending?, due?, lease: none / expired / held by another relay).
_EVENTS = st.lists(
    st.tuples(
        st.sampled_from("abcd"),
        st.booleans(),
        st.sampled_from([True, True, False]),
        st.sampled_from(["none", "none", "expired", "held"]),
    ),
    max_size=24,
)


def model(events: list[tuple[str, bool, bool, str]], limit: int) -> list[tuple[str, int]]:
    """The claim rule in plain Python: first `limit` free heads by position, then their runs in the first `limit`."""
    sequence: dict[str, int] = {}
    rows = []
    for user, pending, due, lease in events:
        sequence[user] = sequence.get(user, 0) + 1
        if pending:
            rows.append((user, sequence[user], due and lease != "held"))
    heads: dict[str, bool] = {}
    for user, _, free in rows:
        heads.setdefault(user, free)
    chosen = [user for user in dict.fromkeys(user for user, _, _ in rows) if heads[user]][:limit]
    taken, stopped = [], set()
    for user, number, free in [row for row in rows if row[0] in chosen][:limit]:
        if user in stopped:
            continue
        if not free:
            stopped.add(user)
            continue
        taken.append((user, number))
    return taken


@given(events=_EVENTS, limit=st.integers(1, 8))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # emptied per example
def test_claim_agrees_with_the_model(engine: Engine, events: list[tuple[str, bool, bool, str]], limit: int) -> None:
    with engine.begin() as conn:
        conn.execute(delete(outbox))
    sequence: dict[str, int] = {}
    for user, pending, due, lease in events:
        sequence[user] = sequence.get(user, 0) + 1
        add(engine, (user, sequence[user]))
        values: dict[str, object] = {"next_attempt_at": 0 if due else NOW + 1}
        if not pending:
            values["state"] = SENT
        if lease != "none":
            values.update(lease_owner="r2", lease_until=NOW - 1 if lease == "expired" else NOW + 1)
        change(engine, user, sequence[user], **values)

    assert claim(engine, limit) == model(events, limit)


def test_backlog_counts_and_names_the_oldest_pending_event(engine: Engine) -> None:
    with engine.begin() as conn:
        for n, created in enumerate((100, 200, 300, 400), start=1):
            repository.add_event(conn, "u", n, "{}", created)
    change(engine, "u", 1, state=SENT)
    change(engine, "u", 4, state=PARKED)

    with engine.connect() as conn:
        assert repository.backlog(conn) == repository.Backlog(pending=2, oldest_pending=200, parked=1)
    change(engine, "u", 2, state=SENT)
    change(engine, "u", 3, state=SENT)
    with engine.connect() as conn:
        assert repository.backlog(conn) == repository.Backlog(pending=0, oldest_pending=None, parked=1)
