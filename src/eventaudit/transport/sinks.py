"""Where events go, from one sink URL: ``http(s)://…`` (the audit service) or ``kafka://…`` (a topic)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from eventaudit.transport.http import HTTPSender, check_url
from eventaudit.transport.outcome import Sender

SinkMode = Literal["binary", "structured", "batch"]


def is_kafka(sink: str) -> bool:
    """Whether ``sink`` names a Kafka topic rather than an HTTP endpoint."""
    return sink.startswith("kafka://")


def check_sink(sink: str, mode: SinkMode) -> None:
    """Raise ``ValueError`` saying what is wrong with ``sink`` (or with ``mode`` for it)."""
    if is_kafka(sink):
        from eventaudit.transport.kafka import parse_url

        parse_url(sink)
        if mode == "batch":
            raise ValueError("Kafka has no batch content mode (one record per event); use binary or structured")
        return
    check_url(sink)


def open_sender(
    sink: str,
    *,
    mode: SinkMode = "binary",
    token: str | None = None,
    timeout: float = 10.0,
    kafka_options: Mapping[str, str] | None = None,
) -> Sender:
    """A sender for ``sink`` (checked with :func:`check_sink` first); the caller closes it.

    Raises:
        ValueError: ``sink`` or ``mode`` cannot be used.
        confluent_kafka.KafkaException: ``kafka_options`` are not valid librdkafka settings.
    """
    check_sink(sink, mode)
    if is_kafka(sink):
        from eventaudit.transport.kafka import KafkaSender, parse_url

        assert mode != "batch"
        return KafkaSender(parse_url(sink), mode=mode, options=kafka_options, timeout=timeout)
    return HTTPSender(sink, mode=mode, token=token, timeout=timeout)
