"""Argument types shared by every ``eventaudit`` subcommand: each names what was wrong."""

from __future__ import annotations

import argparse
from typing import Final

from eventaudit.httplimits import REQUEST_TIMEOUT


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, not {value}")
    return value


def positive(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def seconds(text: str) -> float:
    """A duration in seconds, more than 0 and at most a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def milliseconds(text: str) -> float:
    """A duration given in milliseconds (0-1000), returned in seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of milliseconds: {text!r}") from None
    if not 0 <= value <= 1000:
        raise argparse.ArgumentTypeError("must be between 0 and 1000 ms")
    return value / 1000


def kafka_option(text: str) -> tuple[str, str]:
    """A librdkafka setting, ``KEY=VALUE`` (e.g. ``security.protocol=SASL_SSL``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or " " in key.strip():
        raise argparse.ArgumentTypeError(f"a Kafka option is KEY=VALUE (a librdkafka setting), not {text!r}")
    return key.strip(), value


def add_kafka_option(parser: argparse.ArgumentParser) -> None:
    """``--kafka-option KEY=VALUE`` (repeatable), the same on every command that talks to Kafka."""
    parser.add_argument(
        "--kafka-option",
        action="append",
        default=[],
        type=kafka_option,
        metavar="KEY=VALUE",
        help="a librdkafka setting passed to the Kafka clients, e.g. security.protocol=SASL_SSL, "
        "sasl.mechanism=SCRAM-SHA-256, sasl.username=…, sasl.password=…, ssl.ca.location=…; repeatable",
    )


def add_request_timeout(parser: argparse.ArgumentParser) -> None:
    """``--request-timeout SECONDS``, the same on every command that serves HTTP."""
    parser.add_argument(
        "--request-timeout",
        type=seconds,
        default=f"{REQUEST_TIMEOUT:g}",
        metavar="SECONDS",
        help="seconds a request (headers and body) may take to arrive, from its first byte; then it is "
        f"answered 408 and the connection closed (default {REQUEST_TIMEOUT:g})",
    )


CPU_SCHEDULING: Final = ("batch", "inherit")
"""The choices of ``--cpu-scheduling`` (see :func:`eventaudit.httpserver.set_cpu_scheduling`); the first is default."""


def add_cpu_scheduling(parser: argparse.ArgumentParser) -> None:
    """``--cpu-scheduling batch|inherit``, the same on every command that serves HTTP."""
    parser.add_argument(
        "--cpu-scheduling",
        choices=CPU_SCHEDULING,
        default=CPU_SCHEDULING[0],
        help="batch (default, Linux): run the service's threads as SCHED_BATCH, so a thread woken by another "
        "of them waits for its turn instead of preempting it while it holds Python's GIL (about 60%% "
        "fewer context switches under load); inherit: keep the scheduling the process was started with",
    )
