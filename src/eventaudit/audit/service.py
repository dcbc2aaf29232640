"""Ingest with group commit: concurrent requests share one durable transaction.

One writer thread owns the writing connection. Requests put their events on a queue
and wait; the writer takes everything queued, stores it in one transaction with
:meth:`AuditStore.append`, and answers every request only after that commit returned.
A request's events are never split across commits, so a batch is all-or-nothing.

The window: before a commit, the writer waits up to ``window`` for the requests it expects,
as many as took part in the round before (those it just answered, which may come back, plus
those that arrived while it was committing), and commits as soon as they are all in. Clients
that keep a request open at all times (a pool of connections, a load test) then share one
commit without leaving the CPU idle until the window ends; a lone request, when the last
round had one, is committed at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError

from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.store import AuditStore
from eventaudit.events import CloudEvent

_log = logging.getLogger(__name__)
_STOP = object()


class StoreUnavailableError(RuntimeError):
    """The database did not take the events; nothing of the request was stored."""


class ShuttingDownError(RuntimeError):
    """The service is stopping and takes no more events."""


class Stored:
    """The outcome of one request: a seq per event, ``None`` where it was a duplicate."""

    __slots__ = ("seqs",)

    def __init__(self, seqs: list[int | None]) -> None:
        self.seqs = seqs

    def __repr__(self) -> str:
        return f"Stored(seqs={self.seqs!r})"

    @property
    def stored(self) -> int:
        return len(self.seqs) - self.seqs.count(None)

    @property
    def duplicates(self) -> int:
        return len(self.seqs) - self.stored


@dataclass(slots=True)
class _Pending:
    events: Sequence[CloudEvent]
    transport: str
    done: Callable[[Stored | BaseException], None]


class GroupCommitter:
    """The writer thread and its queue; :meth:`submit` is what request handlers await."""

    def __init__(
        self,
        store: AuditStore,
        metrics: AuditMetrics,
        *,
        window: float = 0.0,
        max_events: int = 10_000,
        on_commit: Callable[[int], None] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._window = window
        self._max_events = max_events
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
        self._closed = False
        self._closing = threading.Lock()  # nothing is queued after the stop mark
        # The window (see the module's doc): the writer waits on `_all_in` while `_awaited` > 0;
        # a submit that brings the queue to `_awaited` requests sets it.
        self._expected = 1  # before any round: none expected besides the first
        self._queued_after_append = 0
        self._awaited = 0
        self._all_in = threading.Event()

    def start(self) -> None:
        self._thread.start()

    async def submit(self, events: Sequence[CloudEvent], transport: str = "http") -> Stored:
        """Store ``events`` durably (or find them stored); returns once committed.

        Raises:
            StoreUnavailableError: the database failed; nothing of ``events`` was stored.
            ShuttingDownError: the service is stopping.
        """
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self.submit_nowait(events, transport, functools.partial(_settle, future))
        return await future

    def submit_nowait(
        self, events: Sequence[CloudEvent], transport: str, done: Callable[[Stored | BaseException], None]
    ) -> None:
        """Queue ``events`` from the running event loop; ``done`` is called on that loop once they are committed.

        For a caller that answers from a callback rather than awaiting (the HTTP ingest's direct
        route): no future, no task. ``done`` gets the :class:`Stored` outcome or the exception
        (:class:`StoreUnavailableError`, or what the store raised).

        Raises:
            ShuttingDownError: :meth:`close` was called.
        """
        self.submit_threadsafe(events, transport, _OnLoop(asyncio.get_running_loop(), done))

    def submit_threadsafe(
        self, events: Sequence[CloudEvent], transport: str, done: Callable[[Stored | BaseException], None]
    ) -> None:
        """Queue ``events``; ``done`` is called from the writer thread with the outcome.

        Raises:
            ShuttingDownError: :meth:`close` was called.
        """
        with self._closing:
            if self._closed:
                raise ShuttingDownError("the audit service is shutting down")
            self._queue.put(_Pending(events, transport, done))
            if self._awaited and self._queue.qsize() >= self._awaited:
                self._awaited = 0
                self._all_in.set()

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the writer thread."""
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
            self._all_in.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:  # never started: nobody will store what is queued
            self._refuse_queued()

    def _refuse_queued(self) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, _Pending):
                _answer(item, ShuttingDownError("the audit service stopped before storing the events"))

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                return
            assert isinstance(first, _Pending)
            group = [first]
            count = len(first.events)
            if self._window > 0:
                self._gather()
            while count < self._max_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                assert isinstance(item, _Pending)
                group.append(item)
                count += len(item.events)
            self._metrics.queue_depth.set(self._queue.qsize())
            self._commit(group)
            # Next round: these requests' clients may come back, and what arrived during the commit is
            # queued. A full group left requests behind: those are committed next without waiting.
            self._expected = 1 if count >= self._max_events else len(group) + self._queued_after_append

    def _gather(self) -> None:
        """Wait up to the window until the queue, with the request taken, holds the round's expected requests.

        One wake-up per commit: the submit that completes the round sets the event. (Waiting on the
        queue itself woke this thread, a context switch and a GIL hand-over, for every request.)
        """
        awaited = self._expected - 1  # besides the one taken
        if self._queue.qsize() >= awaited:
            return
        self._all_in.clear()
        self._awaited = awaited
        # A submit between the check above and `_awaited` saw 0; close() may have set the event before clear().
        if self._queue.qsize() < awaited and not self._closed:
            self._all_in.wait(self._window)
        self._awaited = 0

    def _commit(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            results = self._store.append([pending.events for pending in group])
            self._queued_after_append = self._queue.qsize()  # before the answers go out (see _run)
        except SQLAlchemyError as exc:
            _log.error("commit of %d requests failed: %s", len(group), exc.__class__.__name__, exc_info=exc)
            for pending in group:
                _answer(pending, StoreUnavailableError("the database is unavailable"))
            return
        except Exception as exc:  # never leave a request waiting forever
            if len(group) > 1:  # one request's events must not fail the others: commit each alone
                _log.warning("a group commit failed (%s); committing its requests one by one", exc)
                for pending in group:
                    self._commit([pending])
                return
            _log.exception("commit failed")
            _answer(group[0], exc)
            return
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        # Per request, only what its answer needs; the counts per transport (duplicates are rare).
        events = 0
        stored: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        settles: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Stored], None], Stored]]] = {}
        inline: list[tuple[_Pending, Stored]] = []
        for pending, seqs in zip(group, results, strict=True):
            count = len(seqs)
            events += count
            transport = pending.transport
            if None in seqs:
                new = count - seqs.count(None)
                duplicates[transport] = duplicates.get(transport, 0) + count - new
            else:
                new = count
            stored[transport] = stored.get(transport, 0) + new
            done = pending.done
            if type(done) is _OnLoop:  # answered below, one wake-up per event loop
                answers = settles.get(done.loop)
                if answers is None:
                    answers = settles[done.loop] = []
                answers.append((done.done, Stored(seqs)))
            else:
                inline.append((pending, Stored(seqs)))
        self._metrics.group_events.observe(events)
        last = _last_seq(results)
        for transport, count in stored.items():
            self._metrics.ingested.labels(transport).inc(count)
        for transport, count in duplicates.items():
            self._metrics.duplicates.labels(transport).inc(count)
        if last:
            self._metrics.last_seq.set(last)
        for pending, outcome in inline:  # answered once the metrics count them
            _answer(pending, outcome)
        for loop, answers in settles.items():
            try:
                loop.call_soon_threadsafe(_settle_all, answers)
            except RuntimeError:  # its event loop is closed: nobody is waiting any more
                _log.warning("could not answer %d requests: their event loop is gone", len(answers))
        if last and self.on_commit is not None:
            try:
                self.on_commit(last)
            except Exception:  # the writer thread must outlive a failing listener
                _log.exception("on_commit listener failed")


class _OnLoop:
    """The ``done`` of :meth:`GroupCommitter.submit_nowait`: calls ``done`` on its event loop.

    The writer recognises it and answers all the requests of one commit with a single
    ``call_soon_threadsafe``: one wake-up of the event loop (and one hand-over of the GIL)
    per commit instead of one per request.
    """

    __slots__ = ("done", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, done: Callable[[Stored | BaseException], None]) -> None:
        self.loop = loop
        self.done = done

    def __call__(self, outcome: Stored | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.done, outcome)


def _last_seq(results: list[list[int | None]]) -> int:
    """The highest seq of an append's results (0: none new): the last one given, as seqs follow the results' order."""
    for seqs in reversed(results):
        for seq in reversed(seqs):
            if seq is not None:
                return seq
    return 0


def _answer(pending: _Pending, outcome: Stored | BaseException) -> None:
    """Hand ``outcome`` to the request; a requester that went away does not stop the writer."""
    try:
        pending.done(outcome)
    except Exception:
        _log.warning("could not answer a request (its event loop is gone?)", exc_info=True)


def _settle_all(answers: list[tuple[Callable[[Stored], None], Stored]]) -> None:
    for done, outcome in answers:
        try:
            done(outcome)
        except Exception:  # one failing answer must not keep the others waiting
            _log.exception("answering a request failed")


def _settle(future: asyncio.Future[Stored], outcome: Stored | BaseException) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
