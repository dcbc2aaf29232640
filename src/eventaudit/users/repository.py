"""The users service's queries on ``users`` and ``outbox``. SQL lives here only; callers own the transactions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, delete, func, insert, literal, or_, select, tuple_, update

from eventaudit.users.models import PARKED, PENDING, SENT, outbox, users


@dataclass(frozen=True)
class UserRow:
    """A user as stored (times in µs since the epoch)."""

    id: str
    name: str
    password_hash: str
    created_at: int
    updated_at: int
    sequence: int


@dataclass(frozen=True)
class OutboxRow:
    """An outbox event: ``event`` is its JSON event format text."""

    position: int
    user_id: str
    sequence: int
    event: str
    created_at: int
    attempts: int
    state: str = PENDING
    last_error: str | None = None


@dataclass(frozen=True)
class Backlog:
    """How far behind the relay is: pending events, the oldest one's ``created_at``, parked events."""

    pending: int
    oldest_pending: int | None
    parked: int


# --- users --------------------------------------------------------------------------------------


# Statements built once, values bound at each call: building one anew costs more than running it
# (SQLAlchemy computes a cache key from the whole statement every time).
_ADD_USER = insert(users)


def add_user(conn: Connection, user: UserRow) -> None:
    conn.execute(_ADD_USER, vars(user))


_GET_USER = select(users).where(users.c.id == bindparam("user_id"))
_LOCK_USER = _GET_USER.with_for_update()


def get_user(conn: Connection, user_id: str, *, lock: bool = False) -> UserRow | None:
    """The user, or ``None``; ``lock`` holds its row until the transaction ends (PostgreSQL ``FOR UPDATE``)."""
    row = conn.execute(_LOCK_USER if lock else _GET_USER, {"user_id": user_id}).one_or_none()
    return None if row is None else UserRow(**row._mapping)


def page_users(conn: Connection, after: tuple[int, str] | None, limit: int) -> list[UserRow]:
    """Up to ``limit`` users in creation order, after the ``(created_at, id)`` key ``after``."""
    query = select(users).order_by(users.c.created_at, users.c.id).limit(limit)
    if after is not None:
        query = query.where(tuple_(users.c.created_at, users.c.id) > tuple_(literal(after[0]), literal(after[1])))
    return [UserRow(**row._mapping) for row in conn.execute(query)]


_UPDATE_USER = update(users).where(users.c.id == bindparam("user_id"))  # SET: the columns the call binds
_DELETE_USER = delete(users).where(users.c.id == bindparam("user_id"))


def update_user(conn: Connection, user: UserRow) -> None:
    conn.execute(
        _UPDATE_USER,
        {
            "user_id": user.id,
            "name": user.name,
            "password_hash": user.password_hash,
            "updated_at": user.updated_at,
            "sequence": user.sequence,
        },
    )


def delete_user(conn: Connection, user_id: str) -> None:
    conn.execute(_DELETE_USER, {"user_id": user_id})


# --- outbox -------------------------------------------------------------------------------------


_ADD_EVENT = insert(outbox)


def add_event(conn: Connection, user_id: str, sequence: int, event: str, created_at: int) -> None:
    conn.execute(
        _ADD_EVENT,
        {
            "user_id": user_id,
            "sequence": sequence,
            "event": event,
            "created_at": created_at,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": 0,
        },
    )


def claim(conn: Connection, owner: str, now: int, lease_until: int, limit: int) -> list[OutboxRow]:
    """Lease up to ``limit`` pending events to ``owner``: for each user a run of its oldest pending events.

    A user is taken only through its *head*, its pending event with the lowest ``sequence``,
    which must be due and not leased; on PostgreSQL the heads are locked with ``FOR UPDATE SKIP
    LOCKED`` so two relays claiming at once take different users. The head's followers come
    along in order while they are due and nobody else holds them. Whoever holds a user's head
    is the only one who can send that user's events, so no relay overtakes another. Nothing is
    chosen by "position greater than the last one seen": a late commit is a head like any other.
    """
    # Each user's head is its lowest pending sequence: one pass over the (state, user_id, sequence)
    # index finds them all. (A NOT EXISTS probe per pending row found the same heads at several
    # times the cost: with fewer users than `limit`, every round read the whole backlog that way.)
    o = outbox.alias("o")
    lowest = (
        select(outbox.c.user_id, func.min(outbox.c.sequence).label("sequence"))
        .where(outbox.c.state == PENDING)
        .group_by(outbox.c.user_id)
        .subquery("lowest")
    )
    heads = conn.execute(
        select(o.c.user_id)
        .join(lowest, (o.c.user_id == lowest.c.user_id) & (o.c.sequence == lowest.c.sequence))
        .where(o.c.next_attempt_at <= now, or_(o.c.lease_until.is_(None), o.c.lease_until < now))
        .order_by(o.c.position)
        .limit(limit)
        .with_for_update(of=o, skip_locked=True)
    ).scalars()
    head_users = list(heads)
    if not head_users:
        return []
    # Only the first `limit` rows by position: a user's rows are in sequence order there too, and
    # reading every pending row of every head (all of a deep backlog) made each round cost O(backlog).
    rows = conn.execute(
        select(outbox)
        .where(outbox.c.state == PENDING, outbox.c.user_id.in_(head_users))
        .order_by(outbox.c.position)
        .limit(limit)
    ).all()
    taken: list[OutboxRow] = []
    stopped: set[str] = set()
    for row in rows:
        if row.user_id in stopped:
            continue
        if row.next_attempt_at > now or (row.lease_until is not None and row.lease_until >= now):
            stopped.add(row.user_id)  # the run ends where an event is not due or someone else holds it
            continue
        taken.append(_outbox_row(row))
    conn.execute(
        update(outbox)
        .where(outbox.c.position.in_([r.position for r in taken]))
        .values(lease_owner=owner, lease_until=lease_until)
    )
    return taken


def mark_sent(conn: Connection, positions: Sequence[int], now: int) -> int:
    """Mark delivered events sent (those still pending); returns how many were."""
    result = conn.execute(
        update(outbox)
        .where(outbox.c.position.in_(positions), outbox.c.state == PENDING)
        .values(state=SENT, sent_at=now, lease_owner=None, lease_until=None, last_error=None)
    )
    return int(result.rowcount)


def reschedule(conn: Connection, position: int, attempts: int, next_attempt_at: int, error: str) -> None:
    """Try a pending event again at ``next_attempt_at`` (and give up the lease)."""
    conn.execute(
        update(outbox)
        .where(outbox.c.position == position, outbox.c.state == PENDING)
        .values(
            attempts=attempts, next_attempt_at=next_attempt_at, last_error=error, lease_owner=None, lease_until=None
        )
    )


def park(conn: Connection, position: int, attempts: int, reason: str) -> None:
    """Set a pending event aside (dead letter) with the reason the sink gave."""
    conn.execute(
        update(outbox)
        .where(outbox.c.position == position, outbox.c.state == PENDING)
        .values(state=PARKED, attempts=attempts, last_error=reason, lease_owner=None, lease_until=None)
    )


def release(conn: Connection, positions: Sequence[int], owner: str) -> None:
    """Give up ``owner``'s lease on events it did not try."""
    conn.execute(
        update(outbox)
        .where(outbox.c.position.in_(positions), outbox.c.lease_owner == owner, outbox.c.state == PENDING)
        .values(lease_owner=None, lease_until=None)
    )


def parked(conn: Connection, limit: int) -> list[OutboxRow]:
    """Parked events, oldest first."""
    rows = conn.execute(select(outbox).where(outbox.c.state == PARKED).order_by(outbox.c.position).limit(limit))
    return [_outbox_row(row) for row in rows]


def unpark(conn: Connection, positions: Sequence[int] | None, now: int) -> int:
    """Make parked events (all, or those at ``positions``) pending again, due now; returns how many."""
    query = update(outbox).where(outbox.c.state == PARKED)
    if positions is not None:
        query = query.where(outbox.c.position.in_(positions))
    result = conn.execute(query.values(state=PENDING, attempts=0, next_attempt_at=now))
    return int(result.rowcount)


def backlog(conn: Connection) -> Backlog:
    pending, oldest = conn.execute(
        select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.state == PENDING)
    ).one()
    parked_count = conn.execute(select(func.count()).where(outbox.c.state == PARKED)).scalar_one()
    return Backlog(int(pending), None if oldest is None else int(oldest), int(parked_count))


def next_due(conn: Connection, now: int) -> int | None:
    """The earliest ``next_attempt_at`` after ``now`` of a pending event (one waiting for a retry)."""
    value = conn.execute(
        select(func.min(outbox.c.next_attempt_at)).where(outbox.c.state == PENDING, outbox.c.next_attempt_at > now)
    ).scalar()
    return None if value is None else int(value)


def purge_sent(conn: Connection, sent_before: int) -> int:
    """Delete events sent before ``sent_before``; returns how many."""
    result = conn.execute(delete(outbox).where(outbox.c.state == SENT, outbox.c.sent_at < sent_before))
    return int(result.rowcount)


def _outbox_row(row: object) -> OutboxRow:
    r = row._mapping  # type: ignore[attr-defined]
    return OutboxRow(
        position=r["position"],
        user_id=r["user_id"],
        sequence=r["sequence"],
        event=r["event"],
        created_at=r["created_at"],
        attempts=r["attempts"],
        state=r["state"],
        last_error=r["last_error"],
    )
