"""The writer's CPU per event by commit size, with and without the commit's ``fdatasync``.

    python -m bench.ingest.commits [--events N] [--reps R] [--sizes 32 16 8]

``AuditStore.append`` of single-event groups (the rows a single binary request makes), ``--sizes``
events per commit, into a fresh SQLite file in WAL mode: once as the service runs it
(``synchronous=FULL``: each commit waits for an ``fdatasync`` of the WAL) and once with
``synchronous=NORMAL`` (no sync at commit; SQLite still syncs at checkpoints). Sizes and modes take
turns for ``--reps`` repetitions. The CPU time is the process's own (user + system; the kernel's
work for ``fdatasync`` included, its wait not), per event; wall time besides.

From the slope between two commit sizes: what one more commit costs in CPU, and how much of that
is the ``fdatasync`` (FULL less NORMAL). At 32 connections every commit of ``bench.ingest`` holds
one request per connection, so this is the per-commit cost a round of 32 single events pays.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import tempfile
import time
from typing import Any

from bench.ingest.instructions import binary_event


def _events(first: int, count: int) -> list[list[Any]]:
    """Single-event groups, one per binary request, numbered from ``first``."""
    return [[binary_event(n)] for n in range(first, first + count)]


def _store(folder: str, synchronous: str) -> Any:
    from sqlalchemy import event

    from eventaudit import db
    from eventaudit.audit import migrate
    from eventaudit.audit.store import AuditStore

    engine = db.create(f"sqlite:///{folder}/audit-{synchronous.lower()}.db", writer=True)
    if synchronous != "FULL":

        @event.listens_for(engine, "connect")
        def _after_tuning(dbapi_connection: Any, _record: Any) -> None:  # runs after db.create's own
            dbapi_connection.execute(f"PRAGMA synchronous={synchronous}")

    migrate.upgrade(engine)
    engine.dispose()  # the next connection is made with every listener
    with engine.connect() as conn:
        level = conn.exec_driver_sql("PRAGMA synchronous").scalar()
    if level != {"FULL": 2, "NORMAL": 1}[synchronous]:
        raise SystemExit(f"PRAGMA synchronous is {level} where {synchronous} was set")
    return AuditStore(engine)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.commits", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=9600, help="events per measurement (default 9600)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every size and mode (default 3)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 16, 8], help="events per commit")
    args = parser.parse_args(argv)
    if args.events < max(args.sizes) or args.reps < 1 or min(args.sizes) < 1:
        parser.error("--events must hold a commit of the largest size; --reps and --sizes must be positive")
    folder = tempfile.mkdtemp(prefix="eventaudit-commits-")
    stores = {mode: _store(folder, mode) for mode in ("FULL", "NORMAL")}
    cpu: dict[tuple[str, int], list[float]] = {}
    wall: dict[tuple[str, int], list[float]] = {}
    first = 0
    print(f"# python {sys.version.split()[0]}; {args.events:,} events per measurement; SQLite files in {folder}")
    for _rep in range(args.reps):
        for size in args.sizes:
            for mode, store in stores.items():
                groups = _events(first, args.events)
                first += args.events
                gc.collect()
                gc.freeze()  # as the service does after start-up: the events made above are not traced over again
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                for start in range(0, len(groups), size):
                    store.append(groups[start : start + size])
                cpu.setdefault((mode, size), []).append((time.process_time() - cpu_start) / len(groups) * 1e6)
                wall.setdefault((mode, size), []).append((time.perf_counter() - wall_start) / len(groups) * 1e6)
                gc.unfreeze()
    for mode in stores:
        for size in args.sizes:
            runs = cpu[mode, size]
            print(
                f"synchronous={mode:<6} {size:>3} per commit  CPU {statistics.median(runs):6.2f} us/event "
                f"({min(runs):.2f}-{max(runs):.2f}); wall {statistics.median(wall[mode, size]):6.2f} us/event"
            )
    largest, smallest = max(args.sizes), min(args.sizes)
    if largest != smallest:
        extra = {}
        for mode in stores:
            per_event = statistics.median(cpu[mode, smallest]) - statistics.median(cpu[mode, largest])
            commits = 1 / smallest - 1 / largest  # more commits per event
            extra[mode] = per_event / commits
            print(f"synchronous={mode:<6} CPU of one commit more: {extra[mode]:6.0f} us")
        print(f"of which the fdatasync (FULL less NORMAL): {extra['FULL'] - extra['NORMAL']:6.0f} us of CPU per commit")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
