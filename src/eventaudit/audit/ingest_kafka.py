"""Ingest from Kafka: a consumer in a group stores what it reads in the same log as ``POST /``.

One thread runs the consumer. Each round reads a bounded batch of records, decodes them (binary or
structured content mode, kafka-protocol-binding.md §3.2/§3.3), hands the good ones to the group
committer in one submission (so they share a transaction with concurrent HTTP requests) and waits
for the commit; records that are not valid CloudEvents go to ``<topic>.dlq`` with their key, value
and headers plus headers saying why and where they came from. Only when both are durable (the
database commit returned, the broker acknowledged the dead letters) are the offsets committed.

So nothing is lost: a crash before the offset commit means the records are read again, and the
audit log's ``UNIQUE(source, id)`` stores each event once. Nothing stalls: a bad record never
blocks its partition, and while the database is away the batch is retried (with backoff) without
moving on, the partitions paused and the consumer polled, so that it stays in its group however
long the database is away.

Rounds overlap by one: while round N is being written to the database (on the committer's thread,
mostly outside the GIL), round N+1 is read and decoded. N+1 goes to the committer only once N is
finished (stored, dead-lettered, offsets committed), so the log keeps each partition's order and
offsets are committed in order. A rebalance (its callbacks run inside ``consume``) first finishes
the round in flight, so a partition changes hands with nothing of it half-done. The one exception
is a rebalance while the round waits for the database (the wait polls, so callbacks run there too):
that round cannot be finished, so it is abandoned, uncommitted, and its records are read again from
the committed offsets by the partitions' next owner.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.service import GroupCommitter, ShuttingDownError, Stored, StoreUnavailableError
from eventaudit.events import CloudEvent, CloudEventError, EventTooLargeError, UnsupportedFormatError
from eventaudit.events.bindings import kafka as kafka_binding
from eventaudit.operations import NotReadyError
from eventaudit.transport import kafka as kafka_transport

_log = logging.getLogger(__name__)
#: Headers added to a dead letter (the original headers come first, unchanged).
DLQ_REASON: Final = "eventaudit.dlq.reason"
DLQ_KIND: Final = "eventaudit.dlq.kind"
DLQ_TOPIC: Final = "eventaudit.dlq.topic"
DLQ_PARTITION: Final = "eventaudit.dlq.partition"
DLQ_OFFSET: Final = "eventaudit.dlq.offset"
DLQ_VALUE_OMITTED: Final = "eventaudit.dlq.value-omitted"
_REASON_MAX = 2000
_STATS_EVERY_MS = 2000
_RETRY_MAX = 5.0


@dataclass(frozen=True)
class KafkaIngestSettings:
    """Where to read and how."""

    bootstrap: str
    topic: str = "audit"
    group: str = "audit-group-id"
    options: Mapping[str, str] = field(default_factory=dict)
    #: Largest record value taken (bytes); a larger one is a dead letter.
    max_size: int = 1024 * 1024
    #: Records per round (bounds memory: at most this many are held at once).
    batch: int = 5000

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic}.dlq"


class _FatalError(KafkaException):
    """The consumer cannot go on (librdkafka says so)."""


class _RoundAbandonedError(Exception):
    """Partitions were revoked while a round waited for the database: it is left to their next owner."""

    def __init__(self) -> None:
        super().__init__("partitions were revoked while a round waited for the database")
        self.messages: list[Message] = []  # the abandoned round's (set by _finish_in_flight)


@dataclass(frozen=True)
class _DeadLetter:
    message: Message
    kind: str
    reason: str


@dataclass
class _Submission:
    """Events handed to the committer; :meth:`result` waits for its answer."""

    answered: threading.Event = field(default_factory=threading.Event)
    outcome: Stored | BaseException | None = None

    def done(self, outcome: Stored | BaseException) -> None:
        self.outcome = outcome
        self.answered.set()

    def result(self) -> Stored:
        self.answered.wait()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        assert self.outcome is not None
        return self.outcome


@dataclass
class _Round:
    """One batch of records, decoded: the good ones (submitted or not yet) and the dead letters."""

    messages: list[Message]
    good: list[tuple[Message, CloudEvent]]
    dead: list[_DeadLetter]
    submission: _Submission | None = None


class KafkaIngest:
    """The consumer thread: :meth:`start`, :meth:`stop`; :meth:`check_ready` backs ``/readyz``."""

    def __init__(self, settings: KafkaIngestSettings, committer: GroupCommitter, metrics: AuditMetrics) -> None:
        self.settings = settings
        self._committer = committer
        self._metrics = metrics
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-kafka-consumer", daemon=True)
        self._brokers_up = False
        self._stats_at = 0.0
        self._failure: str | None = None
        self._in_flight: _Round | None = None  # submitted to the committer, offsets not committed yet
        self._in_rebalance = False  # in a rebalance callback (inside consume): no polling from there
        self._waiting = False  # in _wait_in_group: a revocation now abandons the round that waits
        self._revoked_while_waiting = False
        base = kafka_transport.client_config(settings.bootstrap, settings.options, "eventaudit-audit")
        self._admin_config = base
        self._consumer_config: dict[str, Any] = {
            **base,
            "group.id": settings.group,
            "enable.auto.commit": "false",
            "enable.auto.offset.store": "false",
            "auto.offset.reset": "earliest",
            "session.timeout.ms": "10000",
            "fetch.queue.backoff.ms": "10",  # librdkafka's default (1 s) throttles a busy consumer
            "queued.max.messages.kbytes": "16384",  # the prefetch queue stays small, whatever the backlog
            "statistics.interval.ms": str(_STATS_EVERY_MS),
            **settings.options,
            "error_cb": self._on_error,
            "stats_cb": self._on_stats,
        }
        # Dead letters carry the original value, which may exceed the default 1 MB message size. Not the
        # idempotent producer: a dead letter written twice is harmless, and a broker that forgets
        # producer ids (a restarted Tansu) must not hold the partition up.
        self._dlq_config = kafka_transport.client_config(
            settings.bootstrap,
            {"acks": "all", "message.max.bytes": "67108864", "delivery.timeout.ms": "30000", **settings.options},
            "eventaudit-audit-dlq",
        )
        # The settings are checked now, so that a mistake stops the service at start with a clear message.
        self._consumer = Consumer(self._consumer_config)
        self._dlq = Producer(self._dlq_config)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the round under way (store, dead letters, offsets), leave the group, stop."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        else:
            self._close()

    def check_ready(self) -> None:
        """Raise :class:`NotReadyError` unless the consumer runs and reaches a broker."""
        if self._failure is not None:
            raise NotReadyError(f"the Kafka consumer stopped: {self._failure}")
        if not self._thread.is_alive():
            raise NotReadyError("the Kafka consumer is not running")
        if not self._stats_at:
            raise NotReadyError(f"the Kafka consumer is starting (connecting to {self.settings.bootstrap})")
        if not self._brokers_up or time.monotonic() - self._stats_at > 3 * _STATS_EVERY_MS / 1000:
            raise NotReadyError(f"the Kafka consumer cannot reach a broker at {self.settings.bootstrap}")

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            kafka_transport.ensure_topics(self._admin_config, [self.settings.topic, self.settings.dlq_topic])
            self._consumer.subscribe(
                [self.settings.topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
            )
            _log.info(
                "Kafka consumer reading %s at %s in group %s",
                self.settings.topic,
                self.settings.bootstrap,
                self.settings.group,
            )
            while not self._stopping.is_set():
                messages: list[Message] = []
                try:
                    # With a round in flight, take only what is already fetched; if nothing is, finish that round.
                    messages = self._consumer.consume(self.settings.batch, 0 if self._in_flight else 0.5)
                    if not messages:
                        self._finish_in_flight()
                        continue
                    next_round = self._decode(messages)
                    if not self._finish_in_flight():  # stopping: the next owner reads it again
                        self._rewind(messages)
                        break
                    self._begin(next_round)
                except _RoundAbandonedError as exc:  # its records and these: to the partitions' next owner
                    self._rewind(exc.messages + messages)  # (a partition still ours: back to the round's first)
                    _log.info("%s; its records are left to the partitions' next owner", exc)
                except _FatalError:
                    raise
                except Exception:  # nothing of it was committed: go back and read it again after a pause
                    self._rewind(messages)
                    _log.exception("a round of %d Kafka records failed; reading them again in 1 s", len(messages))
                    self._stopping.wait(1.0)
            with contextlib.suppress(_RoundAbandonedError):  # (stopping: read again by whoever comes next)
                self._finish_in_flight()
        except Exception as exc:  # a fatal client error: say so on /readyz and in the log
            self._failure = f"{exc.__class__.__name__}: {exc}"
            _log.exception("the Kafka consumer stopped")
        finally:
            self._close()

    def _close(self) -> None:
        with contextlib.suppress(RuntimeError):  # (closed already)
            self._consumer.close()  # leaves the group at once, so the partitions move without waiting
        self._dlq.flush(5.0)

    def _decode(self, messages: list[Message]) -> _Round:
        """``messages`` sorted into events and dead letters."""
        good: list[tuple[Message, CloudEvent]] = []
        dead: list[_DeadLetter] = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise _FatalError(error)
                if error.code() != KafkaError._PARTITION_EOF:
                    _log.warning("Kafka consumer: %s", error)
                continue
            try:
                event = kafka_binding.decode(
                    message.key(), _headers(message), message.value(), max_size=self.settings.max_size
                )
            except CloudEventError as exc:
                dead.append(_DeadLetter(message, _kind(exc), str(exc)))
            else:
                good.append((message, event))
        return _Round(messages, good, dead)

    def _begin(self, round_: _Round) -> None:
        """Hand the events of ``round_`` to the committer and go on; :meth:`_finish_in_flight` waits for it."""
        if round_.good:
            round_.submission = self._submit([event for _, event in round_.good])
        self._in_flight = round_

    def _finish_in_flight(self) -> bool:
        """Store, dead-letter, then commit the offsets of the round in flight; whether that finished.

        If it cannot be finished (stopping), or fails, its records are rewound, so they are read again.
        """
        round_, self._in_flight = self._in_flight, None
        if round_ is None:
            return True
        try:
            done = self._store(round_.good, round_.dead, round_.submission) and self._dead_letters(round_.dead)
        except _RoundAbandonedError as exc:  # rewound by the caller, with the records read after it
            exc.messages = round_.messages
            raise
        except BaseException:
            self._rewind(round_.messages)
            raise
        if not done:  # stopping: what was read and not finished is read again by whoever comes next
            self._rewind(round_.messages)
            return False
        self._commit_offsets(round_.messages)
        return True

    def _store(
        self, good: list[tuple[Message, CloudEvent]], dead: list[_DeadLetter], first: _Submission | None = None
    ) -> bool:
        """Store ``good`` (``first``: its submission, if made); whether that finished. Refused events join ``dead``."""
        attempts = 0
        while good and (first is not None or not self._stopping.is_set()):
            try:
                submission, first = first or self._submit([event for _, event in good]), None
                outcome = submission.result()
            except StoreUnavailableError:
                attempts += 1
                self._metrics.kafka_retries.inc()
                delay = min(_RETRY_MAX, 0.1 * 2**attempts)
                _log.warning("the database is unavailable; storing %d Kafka records again in %.1f s", len(good), delay)
                self._wait_in_group(delay)
                if self._revoked_while_waiting:
                    raise _RoundAbandonedError from None
                continue
            except ShuttingDownError:
                return False
            except Exception as exc:  # the store refused something in the batch: find which, one by one
                if len(good) == 1:
                    dead.append(_DeadLetter(good[0][0], "store-refused", f"{exc.__class__.__name__}: {exc}"))
                    return True
                return all(self._store([item], dead) for item in good)
            self._metrics.kafka_records.labels("stored").inc(outcome.stored)
            if outcome.duplicates:
                self._metrics.kafka_records.labels("duplicate").inc(outcome.duplicates)
            return True
        return not good

    def _wait_in_group(self, seconds: float) -> None:
        """Wait ``seconds`` (less if stopping) and stay a member of the group meanwhile.

        librdkafka takes a consumer that has not polled for ``max.poll.interval.ms`` (5 minutes by
        default) out of its group, and the database may be away longer than that. So the partitions are
        paused and the consumer is polled: nothing is fetched, but the member stays. A record a poll hands
        over all the same (of a partition assigned meanwhile, not paused yet) is rewound, to be read after
        this round. In a rebalance callback (inside ``consume``) polling is not allowed: there it only waits.

        A poll may also run a rebalance's callbacks. A round cannot be finished while the database is
        away, so partitions revoked meanwhile abandon it (``_revoked_while_waiting``): its records, and
        those read after it, are left to the partitions' next owner, which reads them from the last
        committed offsets (if that is this consumer again, it reads them again; nothing is stored twice).
        """
        if self._in_rebalance:
            self._stopping.wait(seconds)
            return
        deadline = time.monotonic() + seconds
        paused: dict[tuple[str, int], TopicPartition] = {}
        self._revoked_while_waiting = False
        self._waiting = True
        try:
            while not self._stopping.is_set() and (left := deadline - time.monotonic()) > 0:
                # (again after every poll: a partition assigned meanwhile is paused too)
                assigned = [p for p in self._consumer.assignment() if (p.topic, p.partition) not in paused]
                if assigned:
                    self._consumer.pause(assigned)
                    paused.update(((p.topic, p.partition), p) for p in assigned)
                message = self._consumer.poll(min(left, 0.5))
                if message is None:
                    continue
                error = message.error()
                if error is None:
                    self._rewind([message])
                elif error.fatal():
                    raise _FatalError(error)
                elif error.code() != KafkaError._PARTITION_EOF:
                    _log.warning("Kafka consumer: %s", error)
        finally:
            self._waiting = False
            # Every partition paused here, assigned still or not: librdkafka keeps a partition paused
            # through a revocation, and one revoked now may be assigned to this consumer again later.
            if paused:
                self._consumer.resume(list(paused.values()))

    def _submit(self, events: Sequence[CloudEvent]) -> _Submission:
        submission = _Submission()
        try:
            self._committer.submit_threadsafe(events, "kafka", submission.done)
        except ShuttingDownError as exc:
            submission.done(exc)
        return submission

    def _dead_letters(self, dead: list[_DeadLetter]) -> bool:
        """Send ``dead`` to the DLQ topic and wait for the broker; whether that finished."""
        attempts = 0
        pending = dead
        while pending and not self._stopping.is_set():
            failed: list[tuple[_DeadLetter, KafkaError]] = []
            for letter in pending:
                self._produce_dead(letter, failed, omit_value=False)
            self._dlq.flush(35.0)
            retry: list[_DeadLetter] = []
            for letter, error in failed:
                if error.code() in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
                    retry_failed: list[tuple[_DeadLetter, KafkaError]] = []
                    self._produce_dead(letter, retry_failed, omit_value=True)
                    self._dlq.flush(35.0)
                    if not retry_failed:
                        continue
                    error = retry_failed[0][1]
                _log.warning("could not write a dead letter to %s: %s", self.settings.dlq_topic, error)
                retry.append(letter)
            retried = {id(letter) for letter in retry}
            for letter in pending:
                if id(letter) not in retried:
                    self._metrics.kafka_dlq.labels(letter.kind).inc()
                    self._metrics.kafka_records.labels("dead-lettered").inc()
                    _log.warning(
                        "Kafka record %s[%d]@%d sent to %s: %s",
                        letter.message.topic(),
                        letter.message.partition(),
                        letter.message.offset(),
                        self.settings.dlq_topic,
                        letter.reason[:300],
                    )
            pending = retry
            if pending:
                attempts += 1
                self._stopping.wait(min(_RETRY_MAX, 0.1 * 2**attempts))
        return not pending

    def _produce_dead(
        self, letter: _DeadLetter, failed: list[tuple[_DeadLetter, KafkaError]], *, omit_value: bool
    ) -> None:
        message = letter.message
        value = message.value()
        headers: list[tuple[str, str | bytes | None]] = _headers(message)
        headers += [
            (DLQ_REASON, letter.reason[:_REASON_MAX]),
            (DLQ_KIND, letter.kind),
            (DLQ_TOPIC, message.topic() or ""),
            (DLQ_PARTITION, str(message.partition())),
            (DLQ_OFFSET, str(message.offset())),
        ]
        if omit_value and value is not None:
            headers.append((DLQ_VALUE_OMITTED, f"{len(value)} bytes, more than the broker takes in one record"))
            value = None

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failed.append((letter, error))

        try:
            self._dlq.produce(
                self.settings.dlq_topic, key=message.key(), value=value, headers=headers, on_delivery=delivered
            )
        except KafkaException as exc:
            failed.append((letter, exc.args[0]))
        except BufferError:
            self._dlq.flush(35.0)
            failed.append((letter, KafkaError(KafkaError._QUEUE_FULL)))

    def _commit_offsets(self, messages: list[Message]) -> None:
        offsets = _next_offsets(messages)
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:  # e.g. a rebalance took the partition: its new owner reads them again
            _log.warning("could not commit Kafka offsets (%s); those records will be read again", exc.args[0])

    def _rewind(self, messages: list[Message]) -> None:
        """Go back to the first record of this round in each partition, so none is skipped."""
        firsts: dict[tuple[str, int], int] = {}
        for message in messages:
            if message.error() is None:
                key = (message.topic() or "", message.partition() or 0)
                firsts.setdefault(key, message.offset() or 0)
        for (topic, partition), offset in firsts.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # not ours any more: the group's next owner starts at the commit
                _log.info("could not rewind %s[%d]: %s", topic, partition, exc.args[0])

    # --- librdkafka callbacks (run inside consume, on this thread) --------------------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        _log.info("Kafka partitions assigned: %s", _names(partitions))
        self._metrics.kafka_assigned.inc(len(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._waiting:  # the round in flight waits for the database (_wait_in_group): it is abandoned
            self._revoked_while_waiting = True
        self._in_rebalance = True
        try:
            self._finish_in_flight()  # its offsets are committed while the partitions are still ours
        finally:
            self._in_rebalance = False
        _log.info("Kafka partitions revoked: %s", _names(partitions))
        self._metrics.kafka_assigned.dec(len(partitions))

    def _on_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._ALL_BROKERS_DOWN:
            self._brokers_up = False
        kafka_transport.client_log.warning("Kafka consumer: %s", error)

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        brokers = stats.get("brokers", {}).values()
        self._brokers_up = any(b.get("state") == "UP" and b.get("nodeid", -1) >= 0 for b in brokers)
        self._stats_at = time.monotonic()
        lag = self._metrics.kafka_lag
        lag.clear()
        for topic, data in stats.get("topics", {}).items():
            for partition, p in data.get("partitions", {}).items():
                if partition != "-1" and p.get("consumer_lag", -1) >= 0 and p.get("fetch_state") == "active":
                    lag.labels(topic, partition).set(p["consumer_lag"])


def _headers(message: Message) -> list[tuple[str, str | bytes | None]]:
    headers = message.headers()
    if headers is None:
        return []
    return list(headers.items()) if isinstance(headers, dict) else list(headers)


def _kind(exc: CloudEventError) -> str:
    if isinstance(exc, EventTooLargeError):
        return "too-large"
    if isinstance(exc, UnsupportedFormatError):
        return "not-a-cloudevent"
    return "invalid"


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    """Per partition, the offset after the last record read (what a commit records)."""
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        if message.error() is None:
            key = (message.topic() or "", message.partition() or 0)
            last[key] = max(last.get(key, -1), message.offset() or 0)
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in last.items()]


def _names(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "none"
