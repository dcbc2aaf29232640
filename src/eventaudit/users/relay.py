"""The outbox relay: publishes outbox events to the sink, marks what was acknowledged, keeps per-user order.

One round: :func:`repository.claim` leases a run of pending events per user (never "position
after the last one seen", so a transaction that commits late is picked up like any other), the
sender delivers them, and one short transaction records the outcomes:

* :class:`~eventaudit.transport.Delivered` — marked sent. Only this marks anything sent.
* :class:`~eventaudit.transport.RetryLater` — the event stays pending and is tried again after an
  exponential backoff with jitter, or after the sink's ``Retry-After``; the user's later events
  wait behind it, so one user's events reach the sink in commit order.
* :class:`~eventaudit.transport.Rejected` — the sink says the event itself is bad: it is parked
  (dead letter, with the reason) and the relay goes on with the rest, the user's later events
  included. ``eventaudit relay --list-parked`` shows parked events, ``--retry-parked`` re-sends them.

A relay that dies between delivering and marking leaves its lease to expire; the events are sent
again (at least once), and the audit log stores each ``(source, id)`` once. Several relays may run
against one PostgreSQL database: a user's events go through whoever leased its oldest pending event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from eventaudit.events import CloudEvent, CloudEventError
from eventaudit.events.formats import json as json_format
from eventaudit.transport import Delivered, Outcome, PipelinedSender, Rejected, RetryLater, Sender
from eventaudit.users import repository
from eventaudit.users.metrics import UsersMetrics
from eventaudit.users.repository import Backlog, OutboxRow
from eventaudit.users.service import now_micros

_log = logging.getLogger(__name__)
_MAX_RETRY_AFTER = 3600.0
_PURGE_EVERY = 60.0


@dataclass(frozen=True)
class RelayOptions:
    """How the relay works: rows per round, users sent at once, timings in seconds."""

    batch: int = 200
    concurrency: int = 16
    poll: float = 0.5
    lease: float = 60.0
    retry_base: float = 0.2
    retry_max: float = 10.0
    keep_sent: float = 24 * 3600.0
    batch_mode: bool = False


@dataclass
class _Outcomes:
    sent: list[OutboxRow] = field(default_factory=list)
    parked: list[tuple[OutboxRow, str]] = field(default_factory=list)
    retry: list[tuple[OutboxRow, RetryLater]] = field(default_factory=list)
    untried: list[OutboxRow] = field(default_factory=list)


class Relay:
    """Publishes the outbox of ``engine`` through ``sender`` until :meth:`stop`.

    ``engine`` should be a writer engine (on SQLite its transactions begin ``IMMEDIATE``).
    The relay never closes ``sender``; its owner does.
    """

    def __init__(
        self,
        engine: Engine,
        sender: Sender,
        options: RelayOptions = RelayOptions(),
        metrics: UsersMetrics | None = None,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self.engine = engine
        self.sender = sender
        self.options = options
        self.metrics = metrics
        self.clock = clock
        self.owner = str(uuid.uuid4())
        self._wake = asyncio.Event()
        self._stopping = False
        self._last_purge = 0.0

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (called after a commit). Loop thread only."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the round under way, then return from :meth:`run`. Loop thread only."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Relay rounds until :meth:`stop`; failures are logged and waited out, never raised.

        What a failed round had claimed is sent again once its lease expires.
        """
        _log.info("relay %s started", self.owner)
        while not self._stopping:
            try:
                claimed = await self.run_once()
                await self._purge()
            except SQLAlchemyError as exc:
                _log.warning("relay: the database failed (%s); trying again", exc.__class__.__name__)
                claimed = 0
            except Exception:
                _log.exception("relay: a round failed; trying again after the poll interval")
                claimed = 0
            if not claimed and not self._stopping:
                await self._idle()
        _log.info("relay %s stopped", self.owner)

    async def run_once(self) -> int:
        """One round: claim, send, record. Returns how many events were claimed.

        Raises:
            SQLAlchemyError: the database failed; what was claimed is retried when its lease expires.
        """
        now = self.clock()
        rows = await asyncio.to_thread(self._claim, now)
        if not rows:
            return 0
        outcomes = await self._send(rows)
        await asyncio.to_thread(self._record, outcomes)
        return len(rows)

    async def drain(self, timeout: float) -> bool:
        """Run rounds until no event is due (or ``timeout`` passes); whether the outbox is empty of due events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not await self.run_once():
                return True
        return False

    def backlog(self) -> Backlog:
        """Pending and parked counts and the oldest pending event's time; updates the gauges."""
        with self.engine.connect() as conn:
            backlog = repository.backlog(conn)
        if self.metrics is not None:
            set_backlog_metrics(self.metrics, backlog, self.clock())
        return backlog

    # --- one round --------------------------------------------------------------------------

    def _claim(self, now: int) -> list[OutboxRow]:
        lease_until = now + int(self.options.lease * 1_000_000)
        with self.engine.begin() as conn:
            return repository.claim(conn, self.owner, now, lease_until, self.options.batch)

    async def _send(self, rows: list[OutboxRow]) -> _Outcomes:
        outcomes = _Outcomes()
        events: list[tuple[OutboxRow, CloudEvent]] = []
        for row in rows:
            try:
                events.append((row, json_format.decode(row.event)))
            except CloudEventError as exc:
                outcomes.parked.append((row, f"the stored event cannot be decoded: {exc}"))
        if isinstance(self.sender, PipelinedSender) and events:
            _fold(events, await self.sender.send_each([event for _, event in events]), outcomes)
            return outcomes
        if self.options.batch_mode and events:
            outcome = await self.sender.send([event for _, event in events])
            if isinstance(outcome, Delivered):
                outcomes.sent.extend(row for row, _ in events)
                return outcomes
            if isinstance(outcome, RetryLater):
                _retry_heads(events, outcome, outcomes)
                return outcomes
            _log.info("relay: the sink refused a batch of %d (%s); sending them one by one", len(events), outcome)
        await self._send_each(events, outcomes)
        return outcomes

    async def _send_each(self, events: list[tuple[OutboxRow, CloudEvent]], outcomes: _Outcomes) -> None:
        """Each user's events in order, one request each; users side by side."""
        by_user: dict[str, list[tuple[OutboxRow, CloudEvent]]] = {}
        for row, event in events:
            by_user.setdefault(row.user_id, []).append((row, event))
        gate = asyncio.Semaphore(self.options.concurrency)

        async def send_user(run: list[tuple[OutboxRow, CloudEvent]]) -> None:
            async with gate:
                for index, (row, event) in enumerate(run):
                    outcome = await self.sender.send([event])
                    if not _note(row, outcome, outcomes):
                        outcomes.untried.extend(r for r, _ in run[index + 1 :])
                        return

        await asyncio.gather(*(send_user(run) for run in by_user.values()))

    def _record(self, outcomes: _Outcomes) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            if outcomes.sent:
                repository.mark_sent(conn, [row.position for row in outcomes.sent], now)
            for row, reason in outcomes.parked:
                repository.park(conn, row.position, row.attempts + 1, reason[:2000])
            for row, retry in outcomes.retry:
                attempts = row.attempts + 1
                at = now + int(self.backoff(attempts, retry.after) * 1_000_000)
                repository.reschedule(conn, row.position, attempts, at, retry.reason[:2000])
            if outcomes.untried:
                repository.release(conn, [row.position for row in outcomes.untried], self.owner)
        self._count(outcomes, now)

    def _count(self, outcomes: _Outcomes, now: int) -> None:
        for row, reason in outcomes.parked:
            _log.warning("relay: parked event of user %s (sequence %d): %s", row.user_id, row.sequence, reason)
        for row, retry in outcomes.retry:
            _log.info("relay: will retry event of user %s (sequence %d): %s", row.user_id, row.sequence, retry.reason)
        if self.metrics is None:
            return
        self.metrics.sent.inc(len(outcomes.sent))
        for row in outcomes.sent:
            self.metrics.delivery_seconds.observe(max(0, now - row.created_at) / 1_000_000)
        self.metrics.parkings.inc(len(outcomes.parked))
        for _, retry in outcomes.retry:
            self.metrics.retries.labels(_reason_label(retry.reason)).inc()

    def backoff(self, attempts: int, after: float | None = None) -> float:
        """Seconds to wait before attempt ``attempts + 1``: the sink's ``after`` when it gave one, else
        exponential (``retry_base`` doubling up to ``retry_max``) with jitter (a random half to all of it)."""
        if after is not None:
            return min(max(after, 0.0), _MAX_RETRY_AFTER)
        ceiling = min(self.options.retry_max, self.options.retry_base * 2 ** min(attempts - 1, 30))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not a secret

    # --- between rounds ---------------------------------------------------------------------

    async def _idle(self) -> None:
        try:
            due = await asyncio.to_thread(self._next_due)
        except SQLAlchemyError:
            due = None
        timeout = self.options.poll
        if due is not None:
            timeout = min(timeout, max(0.0, (due - self.clock()) / 1_000_000))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def _next_due(self) -> int | None:
        with self.engine.connect() as conn:
            return repository.next_due(conn, self.clock())

    async def _purge(self) -> None:
        if time.monotonic() - self._last_purge < _PURGE_EVERY:
            return
        self._last_purge = time.monotonic()
        before = self.clock() - int(self.options.keep_sent * 1_000_000)
        purged = await asyncio.to_thread(self._purge_before, before)
        if purged:
            _log.info("relay: deleted %d events sent more than %.0f s ago", purged, self.options.keep_sent)

    def _purge_before(self, before: int) -> int:
        with self.engine.begin() as conn:
            return repository.purge_sent(conn, before)


def _note(row: OutboxRow, outcome: Outcome, outcomes: _Outcomes) -> bool:
    """Record one event's outcome; whether the user's next event may be sent now."""
    if isinstance(outcome, Delivered):
        outcomes.sent.append(row)
        return True
    if isinstance(outcome, Rejected):
        outcomes.parked.append((row, outcome.reason))
        return True
    outcomes.retry.append((row, outcome))
    return False


def _fold(events: list[tuple[OutboxRow, CloudEvent]], results: Sequence[Outcome], outcomes: _Outcomes) -> None:
    """Per-event outcomes of a pipelined send, read user by user in order.

    After a user's first event to be retried, that user's later events count as untried even where
    the sink took them: they are sent again behind it (the receiver deduplicates), so the user's
    events are marked sent only in order.
    """
    blocked: set[str] = set()
    for (row, _), outcome in zip(events, results, strict=True):
        if row.user_id in blocked:
            outcomes.untried.append(row)
        elif not _note(row, outcome, outcomes):
            blocked.add(row.user_id)


def _retry_heads(events: list[tuple[OutboxRow, CloudEvent]], retry: RetryLater, outcomes: _Outcomes) -> None:
    """A batch to retry: each user's first event waits for the backoff, the rest wait behind it."""
    seen: set[str] = set()
    for row, _ in events:
        if row.user_id in seen:
            outcomes.untried.append(row)
        else:
            seen.add(row.user_id)
            outcomes.retry.append((row, retry))


def _reason_label(reason: str) -> str:
    if reason.startswith("HTTP "):
        return reason[:8]  # "HTTP 503"
    return "connection"


def set_backlog_metrics(metrics: UsersMetrics, backlog: Backlog, now: int) -> None:
    """Set the backlog, lag and parked gauges from ``backlog`` as of ``now`` (µs)."""
    metrics.backlog.set(backlog.pending)
    metrics.parked.set(backlog.parked)
    lag = 0.0 if backlog.oldest_pending is None else max(0, now - backlog.oldest_pending) / 1_000_000
    metrics.lag.set(lag)


def list_parked(engine: Engine, limit: int = 1000) -> list[OutboxRow]:
    """Parked events, oldest first, with the reason the sink gave (``last_error``)."""
    with engine.connect() as conn:
        return repository.parked(conn, limit)


def retry_parked(engine: Engine, positions: Sequence[int] | None = None) -> int:
    """Make parked events pending again (all, or those at ``positions``); a running relay re-sends them.

    A re-sent event reaches the sink after the user's later events, which went on without it.
    Returns how many events were unparked.
    """
    with engine.begin() as conn:
        return repository.unpark(conn, positions, now_micros())
