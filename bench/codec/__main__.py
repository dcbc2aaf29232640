"""Decode + validate throughput of eventaudit's CloudEvents codec next to the official SDK.

Both decoders read the same messages, written by the official Python SDK
(``cloudevents`` 2.x, ``cloudevents.core``), in the same process, on one CPU.
Each measurement is the best of several rounds, SDK and ours interleaved.

    python -m bench.codec [--seconds 0.3] [--rounds 7] [--cpu 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version

import msgspec
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from eventaudit.events.bindings import http, kafka
from eventaudit.events.formats import json as json_format

SINGLE_TARGET = 5.0
BATCH_TARGET = 300_000


def sample_event(n: int) -> SdkEvent:
    """A user event as the users service emits it, about 200 bytes in JSON."""
    return SdkEvent(
        attributes={
            "id": f"7d9c0f4e-8f1b-4c2a-9a3e-{n:012d}",
            "source": "/eventaudit/users",
            "type": "user.created",
            "subject": "1042",
            "time": datetime(2026, 11, 27, 2, 1, 22, 123456, tzinfo=UTC),
            "datacontenttype": "application/json",
            "partitionkey": "1042",
        },
        data={"id": "1042", "name": "Ozzy Osbourne"},
    )


def rate(fn: Callable[[], object], per_call: int, seconds: float, rounds: int) -> float:
    """Best events/s over ``rounds`` rounds of about ``seconds`` each."""
    calls = 1
    while True:  # calibrate a loop count that takes about `seconds`
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed > seconds / 4:
            break
        calls *= 2
    calls = max(1, int(calls * seconds / elapsed))
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = max(best, calls * per_call / (time.perf_counter() - start))
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codec", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.3, help="length of one round (default 0.3)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per measurement; the best counts (default 7)")
    parser.add_argument("--cpu", type=int, default=0, help="CPU to pin to (default 0)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    fmt = JSONFormat()
    event = sample_event(0)
    h_bin = sdk_http.to_binary(event, fmt)
    h_str = sdk_http.to_structured(event, fmt)
    k_bin = sdk_kafka.to_binary(event, fmt)
    k_str = sdk_kafka.to_structured(event, fmt)
    batch_events = [sample_event(i) for i in range(100)]
    batch_body = b"[" + b",".join(fmt.write(e) for e in batch_events) + b"]"
    batch_headers = {"content-type": json_format.BATCH_CONTENT_TYPE}
    singles = [fmt.write(e) for e in batch_events]

    def sdk_batch() -> None:  # the SDK has no batch format: decode the same events one by one
        for body in singles:
            fmt.read(None, body)

    def k_headers(msg: sdk_kafka.KafkaMessage) -> list[tuple[str, bytes]]:
        return list(msg.headers.items())

    kb_headers, ks_headers = k_headers(k_bin), k_headers(k_str)
    key = k_bin.key.encode() if isinstance(k_bin.key, str) else k_bin.key
    cases: list[tuple[str, int, Callable[[], object], Callable[[], object]]] = [
        ("HTTP binary", 1, lambda: sdk_http.from_binary(h_bin, fmt), lambda: http.decode(h_bin.headers, h_bin.body)),
        (
            "HTTP structured",
            1,
            lambda: sdk_http.from_structured(h_str, fmt),
            lambda: http.decode(h_str.headers, h_str.body),
        ),
        ("HTTP batch of 100", 100, sdk_batch, lambda: http.decode(batch_headers, batch_body)),
        (
            "Kafka binary",
            1,
            lambda: sdk_kafka.from_binary(k_bin, fmt),
            lambda: kafka.decode(key, kb_headers, k_bin.value),
        ),
        (
            "Kafka structured",
            1,
            lambda: sdk_kafka.from_structured(k_str, fmt),
            lambda: kafka.decode(key, ks_headers, k_str.value),
        ),
    ]
    print(
        f"# python {platform.python_version()} on {platform.machine()}, pinned to CPU {args.cpu}; "
        f"cloudevents {version('cloudevents')}, msgspec {version('msgspec')}"
    )
    print(f"# structured event: {len(h_str.body)} bytes; binary body: {len(h_bin.body)} bytes")
    bare = rate(lambda: msgspec.json.decode(h_str.body), 1, args.seconds, args.rounds)
    print(f"# reference: bare msgspec.json.decode of the structured body: {bare:,.0f} events/s")
    print(f"{'mode':<20}{'SDK events/s':>14}{'ours events/s':>15}{'ratio':>8}  target")
    failed = False
    for name, per_call, sdk, ours in cases:
        sdk_rate = rate(sdk, per_call, args.seconds, args.rounds)
        our_rate = rate(ours, per_call, args.seconds, args.rounds)
        ratio = our_rate / sdk_rate
        if per_call > 1:
            ok = our_rate >= BATCH_TARGET
            target = f">= {BATCH_TARGET:,} events/s"
        else:
            ok = ratio >= SINGLE_TARGET
            target = f">= {SINGLE_TARGET:g}x SDK"
        failed |= not ok
        print(f"{name:<20}{sdk_rate:>14,.0f}{our_rate:>15,.0f}{ratio:>7.1f}x  {target} {'met' if ok else 'MISSED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
