"""Peak memory of the audit service while it exports a large log.

    python -m bench.export [--events 1000000] [--formats jsonl csv] [--keep PATH]

Fills a SQLite audit log with ``--events`` events through the store's own append (hash
chain and all; ``--keep PATH`` keeps the file and reuses it next time), then, for each
format, starts a fresh ``eventaudit audit`` pinned to one CPU and reads
``GET /v1/events/export?format=…`` to the end from the other CPU, counting lines and bytes.
The server's resident set is sampled every 50 ms; the figure reported is its ``VmHWM``
(the largest resident set it ever had), next to the resident set it had before the export.
``--slow`` reads the answer at a throttled pace for a while instead, to show that a slow
client holds the server's memory flat rather than making it buffer the log.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.ingest.__main__ import TOKEN, audit_command, free_port, peak_rss_mib, server

BODY = {"id": "0", "name": "Ozzy Osbourne", "email": "ozzy@example.com"}


def fill(path: Path, events: int, group: int = 10_000) -> None:
    """Append ``events`` users-service-like events to a fresh SQLite log at ``path``."""
    from eventaudit import db
    from eventaudit.audit import migrate
    from eventaudit.audit.store import AuditStore
    from eventaudit.events import CloudEvent

    engine = db.create(f"sqlite:///{path}", writer=True)
    migrate.upgrade(engine)
    store = AuditStore(engine)
    started = time.perf_counter()
    for first in range(0, events, group):
        batch = [
            CloudEvent.create(
                type=("user.created", "user.updated", "user.deleted")[n % 3],
                source="/bench/users",
                id=f"export-{n}",
                subject=str(n),
                time="2026-11-27T10:00:00.123456Z",
                data={**BODY, "id": str(n)},
                extensions={"partitionkey": str(n)},
            )
            for n in range(first, min(first + group, events))
        ]
        store.append([batch])
        print(f"\r# filling: {first + len(batch):,} events", end="", file=sys.stderr, flush=True)
    engine.dispose()
    print(f"\r# filled {events:,} events in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def current_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def sample_rss(pid: int, samples: list[float], done: threading.Event) -> None:
    """Append the resident set of ``pid`` to ``samples`` every 50 ms until ``done``."""
    while not done.wait(0.05):
        samples.append(current_rss_mib(pid))


def export(url: str, fmt: str, slow_seconds: float | None) -> tuple[int, int, float]:
    """Read the export to its end (or for ``slow_seconds`` at a crawl); lines, bytes, seconds."""
    lines = size = 0
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream("GET", f"{url}/v1/events/export", params={"format": fmt}, headers=headers, timeout=60) as r:
        r.raise_for_status()
        for chunk in r.iter_raw(65536):
            lines += chunk.count(b"\n")
            size += len(chunk)
            if slow_seconds is not None:
                if time.perf_counter() - started > slow_seconds:
                    break
                time.sleep(0.01)  # ~6 MB/s at most: the server must wait for the client, not buffer
    return lines, size, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", choices=["jsonl", "csv"], default=["jsonl", "csv"])
    parser.add_argument("--keep", type=Path, help="SQLite file to keep (and reuse when it holds --events)")
    parser.add_argument("--slow", type=float, metavar="SECONDS", help="read at a crawl for this long instead")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {args.load_cpu})

    path = args.keep or Path(f"/tmp/eventaudit-export-{os.getpid()}.db")
    marker = path.with_suffix(".filled")
    if not (args.keep and marker.exists() and marker.read_text() == str(args.events)):
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        fill(path, args.events)
        marker.write_text(str(args.events))
    print(
        f"# python {sys.version.split()[0]}, server on CPU {args.server_cpu}, client on CPU {args.load_cpu}; "
        f"{args.events:,} events in {path.stat().st_size / 2**20:,.0f} MiB of SQLite"
    )
    try:
        for fmt in args.formats:
            port = free_port()
            with server(audit_command(f"sqlite:///{path}", port), args.server_cpu, port) as proc:
                before = current_rss_mib(proc.pid)
                samples: list[float] = []
                done = threading.Event()
                sampler = threading.Thread(target=sample_rss, args=(proc.pid, samples, done))
                sampler.start()
                try:
                    lines, size, seconds = export(f"http://127.0.0.1:{port}", fmt, args.slow)
                finally:
                    done.set()
                    sampler.join()
                peak = peak_rss_mib(proc.pid)
            quarter = len(samples) // 4 or 1
            rows = lines - (fmt == "csv")  # the CSV header line
            print(
                f"export {fmt:<5} {'(slow client) ' if args.slow else ''}{rows:>10,} events {size / 2**20:>8,.0f} MiB "
                f"{seconds:>6.1f} s {rows / seconds:>9,.0f} ev/s; RSS before {before:.0f} MiB, "
                f"peak {peak:.0f} MiB (first quarter max {max(samples[:quarter], default=before):.0f}, "
                f"last quarter max {max(samples[-quarter:], default=before):.0f}); target < 200 MiB "
                f"{'met' if peak < 200 else 'MISSED'}",
                flush=True,
            )
            if args.slow is None and rows != args.events:
                print(f"# the export had {rows:,} events, not {args.events:,}", file=sys.stderr)
                return 1
    finally:
        if args.keep is None:
            for stale in (path, marker, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                stale.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
