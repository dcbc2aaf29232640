"""The group committer on a real store (SQLite and PostgreSQL): shared commits, batches, duplicates, faults, close."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager

import msgspec
import pytest

from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.service import GroupCommitter, ShuttingDownError, Stored, StoreUnavailableError
from eventaudit.audit.store import AuditStore, EventFilter
from eventaudit.events import CloudEvent
from tests.integration.audit.logs import event, open_store, postgres_down, table_gone


@pytest.fixture
def store(db_url: str) -> Iterator[AuditStore]:
    with open_store(db_url) as opened:
        yield opened


@pytest.fixture
def metrics() -> AuditMetrics:
    return AuditMetrics()


@pytest.fixture
def committer(store: AuditStore, metrics: AuditMetrics) -> Iterator[GroupCommitter]:
    started = GroupCommitter(store, metrics)
    started.start()
    yield started
    started.close()


def sample(metrics: AuditMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def stored_ids(store: AuditStore) -> dict[int, str]:
    """seq -> CloudEvent id of everything stored."""
    return {r.seq: msgspec.json.decode(r.event)["id"] for r in store.find(EventFilter(), limit=100_000)}


def test_concurrent_submits_share_commits_and_each_gets_its_own_seq(
    committer: GroupCommitter, store: AuditStore, metrics: AuditMetrics
) -> None:
    events = [event() for _ in range(200)]

    async def submit_all() -> list[Stored]:
        return await asyncio.gather(*(committer.submit([e]) for e in events))

    results = asyncio.run(submit_all())

    seqs = [result.seqs[0] for result in results]
    assert sorted(s for s in seqs if s is not None) == list(range(1, 201))
    by_seq = stored_ids(store)
    assert [by_seq[seq] for seq in seqs if seq is not None] == [e.id for e in events]  # each its own event
    commits = sample(metrics, "eventaudit_commit_group_events_count")
    assert 1 <= commits < 200  # commits were shared
    assert sample(metrics, "eventaudit_commit_group_events_sum") == 200
    assert sample(metrics, "eventaudit_ingested_events_total", transport="http") == 200
    assert sample(metrics, "eventaudit_commit_seconds_count") == commits
    assert sample(metrics, "eventaudit_last_seq") == 200


def test_a_requests_events_stay_together(committer: GroupCommitter, store: AuditStore) -> None:
    batches = [[event(subject=f"{n}") for _ in range(1 + n % 7)] for n in range(60)]

    async def submit_all() -> list[Stored]:
        return await asyncio.gather(*(committer.submit(batch, "kafka") for batch in batches))

    results = asyncio.run(submit_all())

    by_seq = stored_ids(store)
    for batch, result in zip(batches, results, strict=True):
        first = result.seqs[0]
        assert first is not None
        assert result.seqs == list(range(first, first + len(batch)))  # consecutive: one request, one stretch
        assert [by_seq[seq] for seq in result.seqs if seq is not None] == [e.id for e in batch]
    assert len(by_seq) == sum(len(batch) for batch in batches)


def test_duplicates_are_counted_and_not_stored(
    committer: GroupCommitter, store: AuditStore, metrics: AuditMetrics
) -> None:
    first, second, third = event(), event(), event()

    async def scenario() -> tuple[Stored, Stored]:
        one = await committer.submit([first, second], "http")
        two = await committer.submit([first, third, third], "kafka")
        return one, two

    one, two = asyncio.run(scenario())

    assert (one.seqs, one.stored, one.duplicates) == ([1, 2], 2, 0)
    assert (two.seqs, two.stored, two.duplicates) == ([None, 3, None], 1, 2)
    assert store.count() == 3
    assert sample(metrics, "eventaudit_duplicate_events_total", transport="kafka") == 2
    assert sample(metrics, "eventaudit_duplicate_events_total", transport="http") == 0
    assert sample(metrics, "eventaudit_ingested_events_total", transport="kafka") == 1


def database_down(store: AuditStore, db_url: str) -> AbstractContextManager[None]:
    """A real outage: PostgreSQL refuses connections; SQLite loses the chain head table."""
    return table_gone(store.writer, "audit_chain_head") if db_url.startswith("sqlite") else postgres_down(db_url)


def test_a_database_failure_fails_every_waiting_request_and_the_committer_recovers(
    committer: GroupCommitter, store: AuditStore, db_url: str
) -> None:
    refused = [[event(), event()] for _ in range(20)]

    async def submit_all(batches: list[list[CloudEvent]]) -> list[Stored | BaseException]:
        return await asyncio.gather(*(committer.submit(batch) for batch in batches), return_exceptions=True)

    with database_down(store, db_url):
        outcomes = asyncio.run(submit_all(refused))

    assert all(isinstance(outcome, StoreUnavailableError) for outcome in outcomes), outcomes
    assert store.count() == 0
    later = asyncio.run(submit_all([refused[0], [event()]]))
    assert [outcome.seqs for outcome in later if isinstance(outcome, Stored)] == [[1, 2], [3]]
    assert store.count() == 3


def test_close_finishes_queued_work_then_refuses_more(store: AuditStore, metrics: AuditMetrics) -> None:
    committer = GroupCommitter(store, metrics, max_events=10)
    outcomes: list[Stored | BaseException] = []
    lock = threading.Lock()

    def done(outcome: Stored | BaseException) -> None:
        with lock:
            outcomes.append(outcome)

    for _ in range(50):  # all queued before the writer runs: close() must find work waiting
        committer.submit_threadsafe([event(), event()], "http", done)
    committer.start()
    committer.close()

    assert len(outcomes) == 50
    assert all(isinstance(outcome, Stored) and outcome.stored == 2 for outcome in outcomes), outcomes
    assert store.count() == 100
    assert sample(metrics, "eventaudit_commit_group_events_count") >= 10  # max_events split the backlog
    with pytest.raises(ShuttingDownError):
        committer.submit_threadsafe([event()], "http", done)
    with pytest.raises(ShuttingDownError):
        asyncio.run(committer.submit([event()]))
    committer.close()  # a second close is harmless
    assert len(outcomes) == 50


def test_close_without_start_answers_what_was_queued(store: AuditStore, metrics: AuditMetrics) -> None:
    committer = GroupCommitter(store, metrics)
    outcomes: list[Stored | BaseException] = []
    committer.submit_threadsafe([event()], "http", outcomes.append)

    committer.close()

    assert len(outcomes) == 1
    assert isinstance(outcomes[0], ShuttingDownError)
    assert store.count() == 0


def test_a_requester_that_cannot_be_answered_does_not_stop_the_writer(
    committer: GroupCommitter, store: AuditStore
) -> None:
    def unreachable(_outcome: Stored | BaseException) -> None:
        raise RuntimeError("Event loop is closed")

    committer.submit_threadsafe([event()], "http", unreachable)

    async def then() -> Stored:
        return await asyncio.wait_for(committer.submit([event()]), timeout=30)

    assert asyncio.run(then()).seqs == [2]
    assert store.count() == 2


def test_a_failing_commit_listener_does_not_stop_the_writer(committer: GroupCommitter, store: AuditStore) -> None:
    seen: list[int] = []
    second_seen = threading.Event()

    def listener(seq: int) -> None:
        seen.append(seq)
        if seq == 2:
            second_seen.set()
        raise RuntimeError("listener broke")

    committer.on_commit = listener

    async def twice() -> list[Stored]:
        first = await asyncio.wait_for(committer.submit([event()]), timeout=30)
        second = await asyncio.wait_for(committer.submit([event()]), timeout=30)
        return [first, second]

    assert [stored.seqs for stored in asyncio.run(twice())] == [[1], [2]]
    assert second_seen.wait(30)  # the listener runs after the requests are answered
    assert seen == [1, 2]


class _RefusesPoison(AuditStore):
    """A store that fails, not with a database error, on any group holding an event of type ``poison``.

    A fake for a fault the real store no longer produces (it once failed on year-0000 times).
    """

    def append(self, groups):  # type: ignore[no-untyped-def]
        if any(e.type == "poison" for group in groups for e in group):
            raise ValueError("cannot store this event")
        return super().append(groups)


def test_one_requests_bad_event_does_not_fail_the_others_in_its_group(store: AuditStore, metrics: AuditMetrics) -> None:
    picky = _RefusesPoison(store.writer, store.reader)
    committer = GroupCommitter(picky, metrics)
    good, poison, other = [event()], [CloudEvent.create(type="poison", source="/s")], [event()]

    async def submit_all() -> list[Stored | BaseException]:
        waiting = [asyncio.ensure_future(committer.submit(b)) for b in (good, poison, other)]
        await asyncio.sleep(0)  # all three are queued before the writer starts: they share one group
        committer.start()
        return await asyncio.gather(*waiting, return_exceptions=True)

    try:
        first, bad, last = asyncio.run(submit_all())
    finally:
        committer.close()
    assert isinstance(bad, ValueError)
    assert isinstance(first, Stored)
    assert isinstance(last, Stored)
    assert sorted(stored_ids(store).values()) == sorted([good[0].id, other[0].id])


def test_one_commit_answers_awaiting_and_callback_requesters_each_with_its_own_outcome(
    store: AuditStore, metrics: AuditMetrics
) -> None:
    # submit()'s futures are settled together, in one event-loop callback per commit; a
    # submit_threadsafe() caller (the Kafka consumer) still gets its own done() call.
    committer = GroupCommitter(store, metrics)
    kafka: list[Stored | BaseException] = []
    kafka_answered = threading.Event()
    batches = [[event()], [event(), event()], [event()]]

    def done(outcome: Stored | BaseException) -> None:
        kafka.append(outcome)
        kafka_answered.set()

    async def submit_all() -> list[Stored]:
        waiting = [asyncio.ensure_future(committer.submit(batch)) for batch in batches]
        await asyncio.sleep(0)  # each task has queued its events
        committer.submit_threadsafe([event(), batches[0][0]], "kafka", done)  # one new, one duplicate
        committer.start()  # all are queued before the writer starts: they share one group
        return await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)

    try:
        results = asyncio.run(submit_all())
        assert kafka_answered.wait(30)
    finally:
        committer.close()
    assert sample(metrics, "eventaudit_commit_group_events_count") == 1
    assert [r.seqs for r in results] == [[1], [2, 3], [4]]
    assert [(o.seqs, o.stored, o.duplicates) for o in kafka if isinstance(o, Stored)] == [([5, None], 1, 1)]
    assert sample(metrics, "eventaudit_ingested_events_total", transport="http") == 4
    assert sample(metrics, "eventaudit_ingested_events_total", transport="kafka") == 1
    assert sample(metrics, "eventaudit_duplicate_events_total", transport="kafka") == 1


def test_last_seq_is_the_highest_seq_given_when_a_group_ends_with_duplicates(
    store: AuditStore, metrics: AuditMetrics
) -> None:
    committer = GroupCommitter(store, metrics)
    first, second = event(), event()

    async def submit_all() -> list[Stored]:
        waiting = [asyncio.ensure_future(committer.submit(b)) for b in ([first], [second], [first], [second, first])]
        await asyncio.sleep(0)
        committer.start()  # all are queued before the writer starts: they share one group
        return await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)

    try:
        results = asyncio.run(submit_all())
    finally:
        committer.close()
    assert sample(metrics, "eventaudit_commit_group_events_count") == 1
    assert [r.seqs for r in results] == [[1], [2], [None], [None, None]]
    assert sample(metrics, "eventaudit_last_seq") == 2


def _rounds(committer: GroupCommitter, first: int, *rounds: int) -> list[float]:
    """``first`` single events queued before the writer starts (one group), then rounds of ``rounds[i]``,
    one after the other: one event, and the rest 0.1 s later, once the writer is waiting for them.
    Returns the seconds each of those rounds took."""

    async def run() -> list[float]:
        queued = [asyncio.ensure_future(committer.submit([event()])) for _ in range(first)]
        await asyncio.sleep(0)
        committer.start()
        await asyncio.wait_for(asyncio.gather(*queued), timeout=20)
        took = []
        for size in rounds:
            started = time.perf_counter()
            leader = asyncio.ensure_future(committer.submit([event()]))
            await asyncio.sleep(0.1)
            rest = [committer.submit([event()]) for _ in range(size - 1)]
            await asyncio.wait_for(asyncio.gather(leader, *rest), timeout=20)
            took.append(time.perf_counter() - started)
        return took

    try:
        return asyncio.run(run())
    finally:
        committer.close()


def test_the_window_ends_as_soon_as_the_requests_of_the_last_round_are_back(
    store: AuditStore, metrics: AuditMetrics
) -> None:
    # A window of 60 s: only its early end answers these rounds within wait_for's 20 s.
    _rounds(GroupCommitter(store, metrics, window=60), 5, 5, 5)
    assert sample(metrics, "eventaudit_commit_group_events_count") == 3  # one commit per round of five
    assert sorted(stored_ids(store)) == list(range(1, 16))


def test_before_any_round_a_request_is_committed_without_a_window(store: AuditStore, metrics: AuditMetrics) -> None:
    _rounds(GroupCommitter(store, metrics, window=60), 0, 1)  # a 60 s window would outlast wait_for
    assert sorted(stored_ids(store)) == [1]


def test_the_window_runs_out_when_fewer_requests_come_back(store: AuditStore, metrics: AuditMetrics) -> None:
    window = 1.0
    (took,) = _rounds(GroupCommitter(store, metrics, window=window), 3, 1)
    assert window <= took < 2 * window  # three expected, one came: it waited the window once, then was stored
    assert sample(metrics, "eventaudit_commit_group_events_count") == 2
    assert sorted(stored_ids(store)) == [1, 2, 3, 4]


def test_after_a_full_group_the_requests_left_behind_are_committed_without_waiting(
    store: AuditStore, metrics: AuditMetrics
) -> None:
    # Groups of at most two events: the six queued requests take three commits, none waiting out the 60 s window.
    _rounds(GroupCommitter(store, metrics, window=60, max_events=2), 6)
    assert sample(metrics, "eventaudit_commit_group_events_count") == 3
    assert sorted(stored_ids(store)) == list(range(1, 7))


def test_close_ends_a_window_that_is_waiting(store: AuditStore, metrics: AuditMetrics) -> None:
    committer = GroupCommitter(store, metrics, window=60)
    answered = threading.Event()

    async def run() -> None:
        queued = [asyncio.ensure_future(committer.submit([event()])) for _ in range(3)]
        await asyncio.sleep(0)
        committer.start()
        await asyncio.gather(*queued)  # one round of three: three expected next
        committer.submit_threadsafe([event()], "http", lambda _outcome: answered.set())
        await asyncio.sleep(0.1)  # the writer waits for two more that never come

    asyncio.run(run())
    started = time.perf_counter()
    committer.close()
    assert time.perf_counter() - started < 20  # not the 60 s window
    assert answered.is_set()
    assert sorted(stored_ids(store)) == [1, 2, 3, 4]
