"""The users service's settings, built once at the edge (the CLI) and handed down."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventaudit import httplimits
from eventaudit.events import CloudEvent, CloudEventError
from eventaudit.transport.sinks import SinkMode, check_sink, is_kafka

#: Events per relay round to an HTTP sink: a batch-mode request carries them all, and 1,000 events
#: of 1 KB would pass the audit service's default 1 MiB body limit.
HTTP_RELAY_BATCH = 200
#: Events per relay round to Kafka: one record each, so only the round's cost sets the size
#: (bench.kafka: ~13,000 events/s at 200, ~22,000 at 5,000).
KAFKA_RELAY_BATCH = 5000

SINK_MODES: tuple[SinkMode, ...] = ("binary", "structured", "batch")


class SettingsError(ValueError):
    """Settings the service refuses to start with; the message says what to change."""


@dataclass(frozen=True)
class UsersSettings:
    """Everything ``eventaudit users`` and ``eventaudit relay`` can be told."""

    host: str = "127.0.0.1"
    port: int = 3000
    db: str = "sqlite:///data/users.db"
    #: The ``source`` of every event (a URI-reference).
    source: str = "/eventaudit/users"
    #: Where the relay delivers the outbox: the audit service (``http(s)://``) or a topic (``kafka://``).
    sink: str = "http://127.0.0.1:8080/"
    sink_mode: SinkMode = "binary"
    #: Bearer token for the sink (the audit service's ``--ingest-token``).
    sink_token: str | None = None
    #: librdkafka settings for a ``kafka://`` sink (security: SASL, TLS), passed through.
    kafka_options: dict[str, str] = field(default_factory=dict)
    #: Run the relay inside the users process.
    relay: bool = True
    migrate: bool = True
    # Limits of the API.
    max_body: int = 64 * 1024
    #: Seconds a request may take to arrive whole, from its first byte, before it is answered 408.
    request_timeout: float = httplimits.REQUEST_TIMEOUT
    max_name_length: int = 200
    max_password_length: int = 1024
    #: Seconds a write waits for a lock another transaction holds before the request is answered 503.
    lock_timeout: float = 5.0
    # The relay.
    #: Events per relay round; ``None``: :data:`HTTP_RELAY_BATCH` or :data:`KAFKA_RELAY_BATCH` by the sink.
    relay_batch: int | None = None
    relay_concurrency: int = 16
    relay_poll: float = 0.5
    relay_lease: float = 60.0
    relay_timeout: float = 10.0
    retry_base: float = 0.2
    retry_max: float = 10.0
    #: Seconds a sent outbox row is kept before the relay deletes it.
    keep_sent: float = 24 * 3600.0

    @property
    def batch(self) -> int:
        """Events per relay round: ``relay_batch``, or the sink's default."""
        if self.relay_batch is not None:
            return self.relay_batch
        return KAFKA_RELAY_BATCH if is_kafka(self.sink) else HTTP_RELAY_BATCH

    def check(self) -> None:
        """Raise :class:`SettingsError` for settings that cannot work."""
        if not 0 < self.port < 65536:
            raise SettingsError(f"--port must be between 1 and 65535, not {self.port}")
        try:
            CloudEvent.create(type="user.created", source=self.source)
        except CloudEventError as exc:
            raise SettingsError(f"--source must be a URI-reference: {exc}") from None
        if self.sink_mode not in SINK_MODES:
            raise SettingsError(f"--sink-mode must be one of {', '.join(SINK_MODES)}, not {self.sink_mode!r}")
        try:
            check_sink(self.sink, self.sink_mode)
        except ValueError as exc:
            raise SettingsError(f"--sink: {exc}") from None
        if is_kafka(self.sink):
            from eventaudit.transport.kafka import check_options

            try:
                check_options(self.kafka_options)
            except ValueError as exc:
                raise SettingsError(f"--kafka-option: {exc}") from None
        for name in ("max_body", "max_name_length", "max_password_length", "batch"):
            if getattr(self, name) < 1:
                raise SettingsError(
                    f"{'relay-batch' if name == 'batch' else name.replace('_', '-')} must be at least 1"
                )
        if not 0 < self.request_timeout <= 86400:
            raise SettingsError("--request-timeout must be more than 0 and at most 86400 seconds")
        if self.relay_concurrency < 1:
            raise SettingsError("the relay concurrency must be at least 1")
        if not 0 < self.lock_timeout <= 600:
            raise SettingsError("the lock timeout must be more than 0 and at most 600 seconds")
        if not 0 < self.retry_base <= self.retry_max:
            raise SettingsError("the retry delays must satisfy 0 < base <= max")
        if self.relay_lease <= self.relay_timeout:
            raise SettingsError("the relay lease must be longer than the sink timeout")
        if self.relay_poll <= 0:
            raise SettingsError("the relay poll interval must be more than 0")
