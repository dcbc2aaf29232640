"""Ingest throughput and latency of the audit service, next to its baselines, in one run.

    python -m bench.ingest [--db sqlite|postgres|both] [--seconds 10] [--connections 32 64] [--rounds 3]

The server runs pinned to one CPU (--server-cpu), the load (wrk, or the paced client
for the latency test) on the other (--load-cpu). The baseline and the audit service's single
events on SQLite (the 10x target) run in --rounds interleaved rounds, all three servers up at
once and loaded in turn, and each ratio compares runs of one round. Baselines measured in the same run:

* the original write-up's Python receiver: Flask's threaded server + the official SDK's
  ``cloudevents.v1.http.from_http``, storing nothing (bench/ingest/baseline_flask.py);
* the ceiling of the HTTP stack: a no-op ASGI app on the same uvicorn protocol
  (bench/ingest/noop_asgi.py), which reads each request and stores nothing;
* the physical limit: a bare ``sqlite3`` ``executemany`` loop inserting the same rows into
  the same schema, one durable commit per 100 rows (``synchronous=FULL``, WAL).

Needs ``wrk`` (Debian: ``apt-get install wrk``) and PostgreSQL for ``--db postgres``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
TOKEN = "bench-read-token-0123456789"
PG_ADMIN = os.environ.get("EVENTAUDIT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(command: list[str], cpu: int, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command`` pinned to ``cpu`` until it answers on ``port``."""
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in finally; not a pipe: a chatty server would fill it and stall
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *command], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"{command} did not start: {log.read().decode(errors='replace')}")  # noqa: B904
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


#: One client for every poll of a benchmark: ``httpx.get`` builds a new SSL context per call (~10 ms
#: of CPU), which polling every 10-20 ms took from the processes under measurement.
polls = httpx.Client(timeout=30)


def peak_rss_mib(pid: int) -> float:
    """VmHWM of ``pid`` (the largest resident set it had), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, all its threads together."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(script: str, url: str, connections: int, seconds: int, cpu: int, server_pid: int) -> dict[str, float]:
    """Run wrk with ``script``; requests/s, latency p50/p99 (ms), non-2xx count, server CPU µs per request.

    The CPU time per request is the server's own (user + system, from /proc): unlike requests/s it
    hardly moves when another process takes turns on the server's CPU, so it is the steadier figure
    on a shared machine.
    """
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(cpu),
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(HERE / script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu_used = cpu_seconds(server_pid) - cpu_before
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])}  # type: ignore[index]
    result["cpu_us"] = cpu_used / int(re.search(r"(\d+) requests in", out)[1]) * 1e6  # type: ignore[index]
    for pct in ("50", "99"):
        match = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        if match:
            result[f"p{pct}"] = float(match[1]) * {"us": 0.001, "ms": 1, "s": 1000}[match[2]]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    result["non2xx"] = float(bad[1]) if bad else 0.0
    result["socket_errors"] = float(sum(int(g) for g in errors.groups())) if errors else 0.0
    return result


async def paced(url: str, rate: int, seconds: int, connections: int = 32) -> dict[str, float]:
    """POST single binary-mode events at a steady ``rate``; latency measured from each one's scheduled time.

    A small keep-alive HTTP/1.1 client on asyncio streams (httpx itself cannot pace 1,000
    requests/s on one core): ``connections`` workers take the scheduled requests in turn.
    """
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    prefix = uuid.uuid4().hex
    jobs: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    failures = 0

    def request(i: int) -> bytes:
        body = b'{"id":"42"}'
        return (
            f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nce-specversion: 1.0\r\n"
            f"ce-type: user.created\r\nce-source: /bench/paced\r\nce-id: {prefix}-{i}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def worker() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, int(port))
        while (job := await jobs.get()) is not None:
            i, due = job
            writer.write(request(i))
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - due) * 1000)
            failures += status >= 300
        writer.close()

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter() + 0.1
    for i in range(rate * seconds):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait((i, due))
    for _ in workers:
        jobs.put_nowait(None)
    await asyncio.gather(*workers)
    latencies.sort()
    return {
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "max": latencies[-1],
        "failures": float(failures),
        "achieved": len(latencies) / (time.perf_counter() - start),
    }


def bare_insert_rate(rows: int = 100_000, per_commit: int = 100) -> float:
    """Rows/s of a bare sqlite3 executemany loop, same schema and rows, a durable commit per 100 rows."""
    from eventaudit import db
    from eventaudit.audit import chain, migrate
    from eventaudit.audit.store import ROW_COLUMNS, _row
    from eventaudit.events import CloudEvent

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bare.db"
        engine = db.create(f"sqlite:///{path}", writer=True)
        migrate.upgrade(engine)
        engine.dispose()
        previous = chain.GENESIS
        prepared = []
        for seq in range(1, rows + 1):
            event = CloudEvent.create(
                type="user.created",
                source="/bench/users",
                subject=str(seq),
                time="2026-11-27T10:00:00.123456Z",
                data={"id": str(seq), "name": "Ozzy Osbourne"},
            )
            canonical = chain.canonical(event)
            previous = chain.link(previous, seq, 0, canonical)
            prepared.append(_row(event, seq, 0, canonical, previous))
        sql = f"INSERT INTO audit_events ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' for _ in ROW_COLUMNS)})"
        values = prepared
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        started = time.perf_counter()
        for i in range(0, rows, per_commit):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(sql, values[i : i + per_commit])
            conn.execute("UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1", (i + per_commit, previous))
            conn.execute("COMMIT")
        elapsed = time.perf_counter() - started
        conn.close()
        return rows / elapsed


@contextmanager
def database(kind: str) -> Iterator[str]:
    """A fresh, empty database URL of ``kind``."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/audit.db"
        return
    import psycopg

    name = f"eventaudit_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def audit_command(url: str, port: int, extra: list[str] | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "eventaudit.cli",
        "audit",
        "--port",
        str(port),
        "--db",
        url,
        "--read-token",
        TOKEN,
        "--log-level",
        "warning",
        *(extra or []),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run (default 10)")
    parser.add_argument("--connections", type=int, nargs="+", default=[32, 64])
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="interleaved rounds of the baseline and the SQLite single-event modes (default 3; median and range)",
    )
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--rate", type=int, default=1000, help="events/s of the latency test (default 1000)")
    parser.add_argument("--latency-only", action="store_true", help="only the paced latency test")
    parser.add_argument(
        "--audit-arg",
        action="append",
        default=[],
        help="one more argument for `eventaudit audit` (repeat; e.g. --audit-arg=--commit-window-ms=1)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    if args.latency_only:
        os.sched_setaffinity(0, {args.load_cpu})
        for kind in kinds:
            latency_test(kind, args, lambda name, value, note: print(f"{name:<58} {value:>16}  {note}", flush=True))
        return 0
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    os.sched_setaffinity(0, {args.load_cpu})
    rows: list[tuple[str, ...]] = []

    def report(name: str, value: str, note: str = "") -> None:
        rows.append((name, value, note))
        print(f"{name:<58} {value:>16}  {note}", flush=True)

    print(
        f"# python {sys.version.split()[0]}, server on CPU {args.server_cpu}, load on CPU {args.load_cpu}, "
        f"{args.seconds}s per run, nproc {os.cpu_count()}"
    )
    port = free_port()
    with server([sys.executable, str(HERE / "noop_asgi.py"), str(port)], args.server_cpu, port) as proc:
        ceiling = wrk(
            "binary.lua", f"http://127.0.0.1:{port}/", max(args.connections), args.seconds, args.load_cpu, proc.pid
        )
    rounded = ("binary", "structured") if "sqlite" in kinds else ()
    baseline = {c: single_events_against_baseline(args, c, rounded, report) for c in args.connections}
    report(
        f"ceiling: no-op ASGI app, same uvicorn protocol, {max(args.connections)} conns",
        f"{ceiling['rps']:,.0f} req/s",
        f"{ceiling['rps'] / baseline[max(args.connections)]:.1f}x baseline; "
        f"server CPU {ceiling['cpu_us']:.0f} us/request",
    )
    bare = bare_insert_rate()
    report("bare sqlite3 executemany, 100 rows/commit (FULL)", f"{bare:,.0f} rows/s")

    for kind in kinds:
        for c in args.connections:
            # SQLite's single events ran above, in rounds against the baseline.
            modes = (
                (("batch.lua", 100),)
                if kind == "sqlite"
                else (("binary.lua", 1), ("structured.lua", 1), ("batch.lua", 100))
            )
            for script, per_request in modes:
                with database(kind) as url:
                    port = free_port()
                    with server(audit_command(url, port, args.audit_arg), args.server_cpu, port) as proc:
                        result = wrk(script, f"http://127.0.0.1:{port}/", c, args.seconds, args.load_cpu, proc.pid)
                        rss = peak_rss_mib(proc.pid)
                events = result["rps"] * per_request
                mode = script.removesuffix(".lua")
                if per_request == 1:
                    note = f"CPU {result['cpu_us']:.0f} us/request"
                else:
                    note = f"CPU {result['cpu_us'] / per_request:.1f} us/event"
                    if kind == "sqlite":
                        note = f"{events / bare:.0%} of bare insert (target >= 60%); {note}"
                report(
                    f"audit on {kind}, {mode}, {c} conns",
                    f"{events:,.0f} ev/s",
                    f"{note}; p99 {result.get('p99', float('nan')):.1f} ms; non-2xx {result['non2xx']:.0f}; "
                    f"peak RSS {rss:.0f} MiB",
                )
        latency_test(kind, args, report)
    return 0


def single_events_against_baseline(
    args: argparse.Namespace, connections: int, modes: tuple[str, ...], report: Callable[[str, str, str], None]
) -> float:
    """The baseline and the audit service on SQLite (``modes``), in ``args.rounds`` interleaved rounds.

    All the servers run at once, pinned to the server CPU, and wrk loads one at a time, the
    order turning each round: a round's ratio compares runs seconds apart, so the machine's drift
    between minutes (large on a shared VM) falls out of it. Reports the median of the rounds and
    their range; returns the baseline's median events/s.
    """
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ("baseline", *modes)}
    with contextlib.ExitStack() as stack:
        targets: dict[str, tuple[str, int]] = {}
        port = free_port()
        proc = stack.enter_context(
            server([sys.executable, str(HERE / "baseline_flask.py"), str(port)], args.server_cpu, port)
        )
        targets["baseline"] = (f"http://127.0.0.1:{port}/", proc.pid)
        for mode in modes:
            url = stack.enter_context(database("sqlite"))
            port = free_port()
            proc = stack.enter_context(server(audit_command(url, port, args.audit_arg), args.server_cpu, port))
            targets[mode] = (f"http://127.0.0.1:{port}/", proc.pid)
        order = list(targets)
        for number in range(args.rounds):
            turn = number % len(order)
            for name in order[turn:] + order[:turn]:
                script = "binary.lua" if name == "baseline" else f"{name}.lua"
                rounds[name].append(
                    wrk(script, targets[name][0], connections, args.seconds, args.load_cpu, targets[name][1])
                )
        rss = {name: peak_rss_mib(pid) for name, (_url, pid) in targets.items()}

    def median(name: str, key: str) -> float:
        return statistics.median(result[key] for result in rounds[name])

    def spread(values: list[float], form: str) -> str:
        return f"{statistics.median(values):{form}} ({min(values):{form}}-{max(values):{form}})"

    base = rounds["baseline"]
    report(
        f"baseline (Flask + SDK from_http), binary, {connections} conns",
        f"{median('baseline', 'rps'):,.0f} ev/s",
        f"p99 {median('baseline', 'p99'):.1f} ms, non-2xx {sum(r['non2xx'] for r in base):.0f}; "
        f"server CPU {median('baseline', 'cpu_us'):.0f} us/request; "
        f"{args.rounds} round{'s' if args.rounds != 1 else ''}, "
        f"{min(r['rps'] for r in base):,.0f}-{max(r['rps'] for r in base):,.0f} ev/s",
    )
    for mode in modes:
        runs = rounds[mode]
        ratios = [run["rps"] / b["rps"] for run, b in zip(runs, base, strict=True)]
        cpu_ratios = [b["cpu_us"] / run["cpu_us"] for run, b in zip(runs, base, strict=True)]
        report(
            f"audit on sqlite, {mode}, {connections} conns",
            f"{median(mode, 'rps'):,.0f} ev/s",
            f"{spread(ratios, '.1f')}x baseline per round (target >= 10x); "
            f"CPU {median(mode, 'cpu_us'):.0f} us/request = {spread(cpu_ratios, '.1f')}x less; "
            f"p99 {median(mode, 'p99'):.1f} ms; non-2xx {sum(r['non2xx'] for r in runs):.0f}; "
            f"peak RSS {rss[mode]:.0f} MiB",
        )
    return median("baseline", "rps")


def latency_test(kind: str, args: argparse.Namespace, report: Callable[[str, str, str], None]) -> None:
    """p99 latency of single binary events paced at ``args.rate``, on a fresh database of ``kind``."""
    with database(kind) as url:
        port = free_port()
        with server(audit_command(url, port, args.audit_arg), args.server_cpu, port) as proc:
            latency = asyncio.run(paced(f"http://127.0.0.1:{port}/", args.rate, args.seconds))
            rss = peak_rss_mib(proc.pid)
        report(
            f"audit on {kind}, p99 latency at {args.rate} ev/s",
            f"{latency['p99']:.2f} ms",
            f"p50 {latency['p50']:.2f} ms, max {latency['max']:.1f} ms, failures {latency['failures']:.0f}, "
            f"achieved {latency['achieved']:,.0f}/s; peak RSS {rss:.0f} MiB (target p99 <= 10 ms)",
        )


if __name__ == "__main__":
    sys.exit(main())
