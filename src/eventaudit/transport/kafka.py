"""Kafka: where a sink URL points, the client settings every part shares, and the producer side.

``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` names brokers and a topic (default ``audit``). Settings a
real cluster needs (``security.protocol``, ``sasl.mechanism``, ``sasl.username``,
``sasl.password``, ``ssl.ca.location``, …) pass through unchanged to librdkafka as
``--kafka-option KEY=VALUE``; they are never logged.

:class:`KafkaSender` produces with ``acks=all`` and the idempotent producer, key = the event's
``partitionkey`` (so one user's events stay in one partition, in order), binary content mode by
default. An event counts as delivered only once the broker acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventaudit.events import CloudEvent
from eventaudit.events.bindings import kafka as kafka_binding
from eventaudit.transport.outcome import Delivered, Outcome, Rejected, RetryLater

KafkaMode = Literal["binary", "structured"]
DEFAULT_TOPIC: Final = "audit"
#: Partitions of a topic this code creates (when it is missing and the cluster lets us).
DEFAULT_PARTITIONS: Final = 3
#: Sends in a row with nothing acknowledged after which the producer is replaced (see KafkaSender._renew).
_RENEW_AFTER_ROUNDS: Final = 3
_TOPIC_RETRY_SECONDS: Final = 60.0
_TOPIC = re.compile(r"[A-Za-z0-9._-]{1,249}")
_log = logging.getLogger(__name__)


class _OncePerMinute(logging.Filter):
    """Lets a message through once a minute: librdkafka repeats a connection failure every second or so."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = re.sub(r"\d+", "#", record.getMessage())
        now = time.monotonic()
        if now - self._seen.get(key, -60.0) < 60.0:
            return False
        if len(self._seen) > 1000:
            self._seen.clear()
        self._seen[key] = now
        return True


#: librdkafka's own log lines, and the errors its clients report, go to this logger (repeats muted for a minute).
client_log = logging.getLogger("eventaudit.kafka.client")
client_log.addFilter(_OncePerMinute())

# Errors that say the record itself cannot be written: sending it again will not help.
_REJECTED = frozenset(
    {
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
    }
)


class KafkaURLError(ValueError):
    """A ``kafka://`` URL that names no broker or an invalid topic."""


@dataclass(frozen=True)
class KafkaTarget:
    """Brokers (``bootstrap.servers``) and a topic."""

    bootstrap: str
    topic: str = DEFAULT_TOPIC


def parse_url(url: str) -> KafkaTarget:
    """``kafka://HOST:PORT[,HOST:PORT]/TOPIC`` (topic default ``audit``).

    Raises:
        KafkaURLError: not such a URL.
    """
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc or "?" in url or "#" in url:
        raise KafkaURLError(f"not a kafka://HOST:PORT[,HOST:PORT]/TOPIC URL: {url!r}")
    brokers = [b.strip() for b in parts.netloc.split(",")]
    for broker in brokers:
        check_broker(broker)
    topic = parts.path.strip("/") or DEFAULT_TOPIC
    check_topic(topic)
    return KafkaTarget(",".join(brokers), topic)


def check_broker(broker: str) -> None:
    """Raise :class:`KafkaURLError` unless ``broker`` is ``HOST:PORT``."""
    host, _, port = broker.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "@" in host or "/" in host:
        raise KafkaURLError(f"a broker is HOST:PORT, not {broker!r}")


def check_bootstrap(bootstrap: str) -> str:
    """``bootstrap`` (``HOST:PORT[,HOST:PORT]``) checked and tidied.

    Raises:
        KafkaURLError: a broker is not ``HOST:PORT``.
    """
    brokers = [b.strip() for b in bootstrap.split(",")]
    for broker in brokers:
        check_broker(broker)
    return ",".join(brokers)


def check_topic(topic: str) -> None:
    """Raise :class:`KafkaURLError` unless ``topic`` is a legal Kafka topic name."""
    if not _TOPIC.fullmatch(topic) or topic in (".", ".."):
        raise KafkaURLError(f"{topic!r} is not a Kafka topic name (letters, digits, '.', '_', '-'; at most 249)")


def check_options(options: Mapping[str, str]) -> None:
    """Raise ``ValueError`` naming the setting librdkafka refuses in ``options``."""
    if not options:
        return
    try:
        Producer(client_config("127.0.0.1:9", options, "eventaudit-check"))
    except KafkaException as exc:
        raise ValueError(exc.args[0].str()) from None


def client_config(bootstrap: str, options: Mapping[str, str], client_id: str) -> dict[str, Any]:
    """The settings every client of ours starts from; ``options`` (the operator's) win."""
    return {
        "bootstrap.servers": bootstrap,
        "client.id": client_id,
        "logger": client_log,
        **options,
    }


def producer_config(bootstrap: str, options: Mapping[str, str], client_id: str, timeout: float) -> dict[str, Any]:
    """An idempotent producer with ``acks=all`` that gives up on a record after ``timeout`` seconds."""
    defaults = {
        "enable.idempotence": "true",
        "acks": "all",
        "linger.ms": "5",
        "delivery.timeout.ms": str(max(1000, int(timeout * 1000))),
    }
    return client_config(bootstrap, {**defaults, **options}, client_id)


def ensure_topics(config: Mapping[str, Any], topics: Sequence[str], timeout: float = 10.0) -> bool:
    """Create the topics that are missing (``DEFAULT_PARTITIONS`` partitions), when the cluster lets us.

    A cluster where topics are made by its operators may refuse; that is logged, not raised:
    the producer or consumer then says what is wrong. Returns whether the broker answered.
    """
    admin = AdminClient(dict(config))
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        _log.warning("could not list Kafka topics (%s); not creating any", exc.args[0])
        return False
    missing = [NewTopic(t, DEFAULT_PARTITIONS) for t in topics if t not in existing]
    if not missing:
        return True
    for topic, future in admin.create_topics(missing, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            _log.info("created Kafka topic %s with %d partitions", topic, DEFAULT_PARTITIONS)
        except KafkaException as exc:
            error = exc.args[0]
            if not (isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                _log.warning("could not create Kafka topic %s: %s", topic, error)
    return True


def outcome_of(error: KafkaError | None, client_error: str | None = None) -> Outcome:
    """What a delivery report (or a refused ``produce``) means for its record.

    ``client_error`` is the client's latest error (a refused login, a broker it cannot reach): a
    record that timed out is reported with it, since it says why.
    """
    if error is None:
        return Delivered("acknowledged by the broker")
    reason = f"Kafka {error.name()}: {error.str()}"
    if client_error and error.code() == KafkaError._MSG_TIMED_OUT:
        reason += f" (the client's last error: {client_error})"
    if error.code() in _REJECTED:
        return Rejected(reason)
    return RetryLater(reason)


class KafkaSender:
    """Produces events to ``target``: one record each, key = ``partitionkey``.

    :meth:`send_each` gives one outcome per event, so a caller can mark exactly what the broker
    acknowledged. With the idempotent producer, records with one key reach their partition in the
    order they were produced, retries included.

    Raises:
        KafkaException: the settings (``options``) are not valid librdkafka settings.
    """

    def __init__(
        self,
        target: KafkaTarget,
        *,
        mode: KafkaMode = "binary",
        options: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        client_id: str = "eventaudit-relay",
    ) -> None:
        self.target = target
        self.mode = mode
        self._timeout = timeout
        self._admin_config = client_config(target.bootstrap, options or {}, client_id)
        self._config = {**producer_config(target.bootstrap, options or {}, client_id, timeout), "error_cb": self._error}
        self._fatal: KafkaError | None = None
        self._rounds_without_ack = 0
        self._last_error: str | None = None
        self._producer = Producer(self._config)
        self._encode: Callable[[CloudEvent], kafka_binding.KafkaRecord] = (
            kafka_binding.encode_binary if mode == "binary" else kafka_binding.encode_structured
        )
        self._topic_checked = False
        self._topic_tried_at = -_TOPIC_RETRY_SECONDS

    async def send(self, events: Sequence[CloudEvent]) -> Outcome:
        """Deliver ``events``; the outcome of the first one not delivered, else :class:`Delivered`."""
        for outcome in await self.send_each(events):
            if not isinstance(outcome, Delivered):
                return outcome
        return Delivered(f"{len(events)} acknowledged by the broker")

    async def send_each(self, events: Sequence[CloudEvent]) -> list[Outcome]:
        """Produce every event, wait for the broker's acknowledgements; one outcome per event, in order."""
        if not events:
            return []
        now = time.monotonic()
        if not self._topic_checked and now - self._topic_tried_at > _TOPIC_RETRY_SECONDS:
            self._topic_tried_at = now  # a broker that did not answer is asked again a minute later
            self._topic_checked = await asyncio.to_thread(
                ensure_topics, self._admin_config, [self.target.topic], self._timeout
            )
        # Delivery reports only store what they are given: a callback that calls into the client
        # while librdkafka has a fatal error pending fails, so outcomes are worked out afterwards.
        reports: list[KafkaError | Literal[False] | None] = [False] * len(events)
        results: list[Outcome | None] = [None] * len(events)
        for index, event in enumerate(events):
            results[index] = await self._produce(self._encode(event), reports, index)
        deadline = self._timeout + 5.0
        try:
            await asyncio.to_thread(self._producer.flush, deadline)
        except (KafkaException, SystemError) as exc:  # a fatal error raised out of flush
            self._fatal = self._fatal or KafkaError(KafkaError._FATAL, str(exc), fatal=True)
        for index, report in enumerate(reports):
            if results[index] is not None:
                continue
            if report is False:
                results[index] = RetryLater(f"no acknowledgement within {deadline:.0f} s")
                continue
            if report is not None and report.fatal():
                self._fatal = report
            results[index] = outcome_of(report, self._last_error)
        outcomes = [r if r is not None else RetryLater("not produced") for r in results]
        if any(isinstance(o, Delivered) for o in outcomes):
            self._rounds_without_ack = 0
        elif all(isinstance(o, RetryLater) for o in outcomes):
            self._rounds_without_ack += 1
        if self._fatal is not None or self._rounds_without_ack >= _RENEW_AFTER_ROUNDS:
            self._renew()
        return outcomes

    def _error(self, error: KafkaError) -> None:
        """librdkafka's error callback (runs inside poll/flush)."""
        if error.fatal():
            self._fatal = error
        if error.code() != KafkaError._ALL_BROKERS_DOWN:  # (says less than the error before it)
            self._last_error = error.str()
        client_log.warning("Kafka producer: %s", error)

    def _renew(self) -> None:
        """Replace a producer that hit a fatal error or has had nothing acknowledged for several rounds.

        A broker that lost its state (a restarted Tansu, or a cluster whose producer-state retention
        expired) no longer knows our producer id: librdkafka then either fails fatally or, seen with
        Tansu, bumps the epoch of that unknown id again and again and never delivers. A new producer
        asks for a new id. What the old one did not deliver was reported as :class:`RetryLater`.
        """
        why = (
            f"a fatal error ({self._fatal})"
            if self._fatal
            else f"nothing acknowledged in {self._rounds_without_ack} tries"
        )
        _log.warning("Kafka producer: %s; starting a new one", why)
        self._rounds_without_ack = 0
        with contextlib.suppress(Exception):
            self._producer.purge()
        self._producer = Producer(self._config)
        self._fatal = None

    async def _produce(
        self, record: kafka_binding.KafkaRecord, reports: list[KafkaError | Literal[False] | None], index: int
    ) -> Outcome | None:
        """Hand ``record`` to the producer; ``None`` when it took it, else the outcome of its refusal."""

        def delivered(error: KafkaError | None, _message: Message) -> None:
            reports[index] = error

        started = time.monotonic()
        while True:
            try:
                self._producer.produce(
                    self.target.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    on_delivery=delivered,
                )
                return None
            except BufferError:  # the local queue is full: let deliveries drain it
                if time.monotonic() - started > self._timeout:
                    return RetryLater("the producer's queue stayed full")
                await asyncio.to_thread(self._producer.poll, 0.1)
            except KafkaException as exc:
                error = exc.args[0]
                if isinstance(error, KafkaError) and error.fatal():
                    self._fatal = error
                return outcome_of(error)

    async def close(self) -> None:
        """Wait (up to the timeout) for what is in flight."""
        await asyncio.to_thread(self._producer.flush, self._timeout)
