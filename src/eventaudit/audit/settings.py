"""The audit service's settings, built once at the edge (the CLI) and handed down."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from eventaudit import httplimits


class SettingsError(ValueError):
    """Settings the service refuses to start with; the message says what to change."""


@dataclass(frozen=True)
class AuditSettings:
    """Everything ``eventaudit audit`` can be told."""

    host: str = "127.0.0.1"
    port: int = 8080
    db: str = "sqlite:///data/audit.db"
    read_tokens: tuple[str, ...] = ()
    ingest_token: str | None = None
    max_body: int = 1024 * 1024
    #: Seconds a request may take to arrive whole, from its first byte, before it is answered 408.
    request_timeout: float = httplimits.REQUEST_TIMEOUT
    allowed_origins: tuple[str, ...] = ("*",)
    allowed_rate: int | None = None
    #: Longest a commit waits for the requests it expects (see GroupCommitter); docs/benchmarks.md: as a
    #: fixed half-millisecond sleep (third round) it took 13-19% off the CPU per single event at 32
    #: connections; ending it once the expected requests are in (fourth round) added ~17% events/s there.
    commit_window: float = 0.0005
    #: Seconds a commit waits for a lock another process holds on the database before the
    #: request is answered 503 (less than an HTTP sender's timeout, so it sees the 503).
    lock_timeout: float = 5.0
    max_group_events: int = 10_000
    migrate: bool = True
    #: Brokers of the Kafka consumer (``HOST:PORT[,HOST:PORT]``); ``None`` runs no consumer.
    kafka_bootstrap: str | None = None
    kafka_topic: str = "audit"
    kafka_group: str = "audit-group-id"
    #: librdkafka settings (security: SASL, TLS), passed through to the consumer and the DLQ producer.
    kafka_options: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        """Raise :class:`SettingsError` for settings that cannot work or are unsafe."""
        if not self.read_tokens and not is_loopback(self.host):
            raise SettingsError(
                f"refusing to listen on {self.host} without a read token: anyone on the network could read "
                "the audit log. Give one with --read-token or EVENTAUDIT_READ_TOKEN, or bind 127.0.0.1."
            )
        if not 0 < self.port < 65536:
            raise SettingsError(f"--port must be between 1 and 65535, not {self.port}")
        if self.max_body < 1:
            raise SettingsError("--max-body must be at least 1 byte")
        if not 0 < self.request_timeout <= 86400:
            raise SettingsError("--request-timeout must be more than 0 and at most 86400 seconds")
        if not 0 <= self.commit_window <= 1:
            raise SettingsError("--commit-window-ms must be between 0 and 1000")
        if not 0 < self.lock_timeout <= 600:
            raise SettingsError("the lock timeout must be more than 0 and at most 600 seconds")
        if self.kafka_bootstrap is not None:
            from eventaudit.transport.kafka import KafkaURLError, check_bootstrap, check_options, check_topic

            try:
                check_bootstrap(self.kafka_bootstrap)
            except KafkaURLError as exc:
                raise SettingsError(f"--kafka-bootstrap: {exc}") from None
            try:
                check_topic(self.kafka_topic)
            except KafkaURLError as exc:
                raise SettingsError(f"--kafka-topic: {exc}") from None
            try:
                check_options(self.kafka_options)
            except ValueError as exc:
                raise SettingsError(f"--kafka-option: {exc}") from None
            if not self.kafka_group.strip():
                raise SettingsError("--kafka-group must not be empty")
        if any(len(token) < 16 for token in (*self.read_tokens, *filter(None, [self.ingest_token]))):
            raise SettingsError("tokens must be at least 16 characters long")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
