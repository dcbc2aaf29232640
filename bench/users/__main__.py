"""The users service: creation next to raw argon2id, reads, outbox drain, commit-to-queryable latency, memory.

    python -m bench.users [--seconds 10] [--connections 32] [--fill-seconds 20] [--rate 50]

Real processes on free loopback ports, SQLite files in a temporary directory. The users
service (and later the relay) runs pinned to one CPU (--server-cpu), the load on the other
(--load-cpu). In order:

1. **creation**: the raw argon2id hash rate with the service's parameters (one thread, pinned to
   the server CPU), then wrk POSTs /v1/users to the users service on that CPU, then the raw rate
   again; the ratio is creation rate / mean of the two raw rates (target >= 0.85).
2. **reads**: wrk GETs /v1/users/{id} over the users just created (target >= 5,000/s, one core).
3. **drain**: with the relay off, wrk PATCHes names for --fill-seconds, leaving one pending outbox
   event per change; then an audit service starts (load CPU) and ``eventaudit relay --sink-mode
   batch`` (server CPU); timed from the relay answering /healthz until the audit log holds every
   event (target >= 5,000 events/s).
4. **latency**: the users service with its relay on (binary mode) and the audit service;
   --rate renames per second, each event followed on the audit service's SSE live tail; latency =
   when the tail delivered it minus the event's ``time`` (its commit time) (target p99 <= 1 s).
5. **memory**: VmHWM (peak RSS) of each users process and of the relay (target < 250 MiB).

Needs ``wrk`` (Debian: ``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx

from bench.ingest.__main__ import free_port, peak_rss_mib, polls, server

HERE = Path(__file__).resolve().parent
TOKEN = "bench-read-token-0123456789"
SOURCE = "/bench/users"
CREATE_RATIO_TARGET = 0.85
READS_TARGET = 5_000
DRAIN_TARGET = 5_000
LATENCY_P99_TARGET_MS = 1_000
RSS_TARGET_MIB = 250


def eventaudit(*args: str) -> list[str]:
    return [sys.executable, "-m", "eventaudit.cli", *args]


def users_command(db_url: str, port: int, sink: str, *, relay: bool) -> list[str]:
    command = eventaudit(
        "users", "--port", str(port), "--db", db_url, "--sink", sink, "--source", SOURCE, "--log-level", "warning"
    )
    return command if relay else [*command, "--no-relay"]


def audit_command(db_url: str, port: int) -> list[str]:
    return eventaudit("audit", "--port", str(port), "--db", db_url, "--read-token", TOKEN, "--log-level", "warning")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time ``pid`` has used so far, all its threads together."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(script: str, url: str, connections: int, seconds: int, cpu: int, server_pid: int) -> dict[str, float]:
    """wrk (one thread, pinned to ``cpu``) with ``script``: requests/s, p99 (ms), non-2xx, and the server's
    CPU time per request (µs), which another process taking turns on the server's CPU hardly moves."""
    before = cpu_seconds(server_pid)
    command = ["taskset", "-c", str(cpu), "wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds}s"]
    out = subprocess.run([*command, "--latency", "-s", script, url], capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(server_pid) - before
    requests = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), "cpu_us": used / requests * 1e6}  # type: ignore[index]
    match = re.search(r"\s99%\s+([\d.]+)(us|ms|s)", out)
    result["p99"] = float(match[1]) * {"us": 0.001, "ms": 1, "s": 1000}[match[2]] if match else float("nan")
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    result["non2xx"] = float(bad[1]) if bad else 0.0
    return result


def hash_rate(cpu: int, seconds: float) -> tuple[float, float]:
    """Raw argon2id hashes/s, one thread pinned to ``cpu``, in a process of its own; and CPU ms per hash."""
    out = subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-m", "bench.users.hashrate", str(seconds), "1"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate, cpu_ms = out.split()
    return float(rate), float(cpu_ms)


def user_ids(base: str) -> list[str]:
    """Every user id, following the cursor of GET /v1/users."""
    ids: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    with httpx.Client(base_url=base, timeout=30) as client:
        while True:
            body = client.get("/v1/users", params=params).json()
            ids.extend(user["id"] for user in body["items"])
            if not body.get("next_cursor"):
                return ids
            params["cursor"] = body["next_cursor"]


def metric(base: str, name: str) -> float:
    for line in polls.get(base + "/metrics").text.splitlines():
        series, _, value = line.rpartition(" ")
        if series == name:
            return float(value)
    raise RuntimeError(f"no {name} at {base}/metrics")


def audit_items(base: str) -> list[dict[str, Any]]:
    """Every item of the audit log, oldest first."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000, "order": "asc"}
    with httpx.Client(base_url=base, timeout=30, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        while True:
            body = client.get("/v1/events", params=params).json()
            items.extend(body["items"])
            if not body["items"]:
                return items
            params["cursor"] = body["next_cursor"]


def last_seq(client: httpx.Client) -> int:
    items = client.get("/v1/events", params={"limit": 1, "order": "desc"}).json()["items"]
    return int(items[0]["seq"]) if items else 0


def seconds_of(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@contextmanager
def relay_process(command: list[str], cpu: int, base: str) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
    """``eventaudit relay`` pinned to ``cpu``, and the moment its /healthz first answered (it relays from then on)."""
    proc = subprocess.Popen(["taskset", "-c", str(cpu), *command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.perf_counter() + 60
        with httpx.Client(base_url=base, timeout=1) as client:
            while True:
                try:
                    client.get("/healthz")
                    break
                except httpx.HTTPError:
                    if proc.poll() is not None or time.perf_counter() > deadline:
                        raise RuntimeError(f"{command} did not start") from None
                    time.sleep(0.005)
        yield proc, time.perf_counter()
    finally:
        proc.terminate()
        proc.wait(30)


def pending_events(path: str) -> int:
    """Outbox events not sent yet, counted in the SQLite file at ``path``."""
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()[0])


def drain(users_db: str, events: int, relay_cpu: int, audit_cpu: int, batch: int) -> dict[str, float]:
    """Start an audit service and a batch-mode relay over a full outbox; time until the log holds ``events``."""
    with tempfile.TemporaryDirectory() as folder:
        audit_port, metrics_port = free_port(), free_port()
        audit_url = f"http://127.0.0.1:{audit_port}"
        with server(audit_command(f"sqlite:///{folder}/audit.db", audit_port), audit_cpu, audit_port):
            relay = eventaudit(
                "relay",
                "--db",
                users_db,
                "--sink",
                audit_url + "/",
                "--sink-mode",
                "batch",
                "--relay-batch",
                str(batch),
                "--metrics-port",
                str(metrics_port),
                "--log-level",
                "warning",
            )
            with (
                relay_process(relay, relay_cpu, f"http://127.0.0.1:{metrics_port}") as (proc, started),
                httpx.Client(base_url=audit_url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30) as client,
            ):
                deadline = started + 600
                while last_seq(client) < events:
                    if time.perf_counter() > deadline:
                        raise RuntimeError(f"the audit log holds {last_seq(client)} of {events} after 600 s")
                    time.sleep(0.01)
                elapsed = time.perf_counter() - started
                # the relay marks a batch sent once the audit service answered: the outbox empties just after
                relay_metrics = f"http://127.0.0.1:{metrics_port}"
                backlog = metric(relay_metrics, "eventaudit_outbox_backlog_events")
                while backlog and time.perf_counter() < deadline:
                    time.sleep(0.01)
                    backlog = metric(relay_metrics, "eventaudit_outbox_backlog_events")
                emptied = time.perf_counter() - started
                rss = peak_rss_mib(proc.pid)
            items = audit_items(audit_url)
    ids = {item["event"]["id"] for item in items}
    first, last = seconds_of(items[0]["recordedtime"]), seconds_of(items[-1]["recordedtime"])
    first_commit = sum(1 for item in items if item["recordedtime"] == items[0]["recordedtime"])
    return {
        "events": float(len(items)),
        "unique": float(len(ids)),
        "rate": events / elapsed,
        "rate_recorded": (len(items) - first_commit) / (last - first) if last > first else float("nan"),
        "seconds": elapsed,
        "emptied": emptied,
        "backlog_after": backlog,
        "relay_rss": rss,
    }


async def latency(users_url: str, audit_url: str, ids: list[str], rate: int, seconds: int) -> dict[str, float]:
    """Rename users at ``rate``/s for ``seconds``; each event's delay from its commit to the audit live tail."""
    delays: dict[str, float] = {}
    answered: list[float] = []
    failures = 0
    headers = {"authorization": f"Bearer {TOKEN}"}
    async with (
        httpx.AsyncClient(base_url=audit_url, headers=headers, timeout=None) as tail,
        tail.stream("GET", "/v1/events/stream", params={"type": "user.updated", "source": SOURCE}) as stream,
        httpx.AsyncClient(base_url=users_url, timeout=30) as client,
    ):
        assert stream.status_code == 200, stream.status_code

        async def follow() -> None:
            async for line in stream.aiter_lines():
                if line.startswith("data:"):
                    arrived = time.time()
                    event = json.loads(line[5:])["event"]
                    delays[event["id"]] = (arrived - seconds_of(event["time"])) * 1000

        async def change(i: int, due: float) -> None:
            nonlocal failures
            response = await client.patch(f"/v1/users/{ids[i % len(ids)]}", json={"name": f"Paced {i}"})
            answered.append((time.perf_counter() - due) * 1000)
            failures += response.status_code != 200

        follower = asyncio.create_task(follow())
        changes = []
        start = time.perf_counter() + 0.1
        for i in range(rate * seconds):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            changes.append(asyncio.create_task(change(i, due)))
        await asyncio.gather(*changes)
        achieved = len(changes) / (time.perf_counter() - start)
        deadline = time.monotonic() + 60
        while len(delays) < len(changes) - failures and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        follower.cancel()
    ordered = sorted(delays.values())
    answered.sort()
    return {
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[int(len(ordered) * 0.99)],
        "max": ordered[-1],
        "seen": float(len(ordered)),
        "sent": float(len(changes)),
        "failures": float(failures),
        "achieved": achieved,
        "answer_p99": answered[int(len(answered) * 0.99)],
    }


def header(args: argparse.Namespace) -> None:
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False).stdout.split("[")[0]
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    print(
        f"# python {sys.version.split()[0]}, eventaudit {version('eventaudit')}, argon2-cffi {version('argon2-cffi')}, "
        f"uvicorn {version('uvicorn')}, {wrk_version.strip()}\n"
        f"# {cpu}, nproc {os.cpu_count()}, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
        f"server on CPU {args.server_cpu}, load on CPU {args.load_cpu}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.users", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="length of each wrk run and hash-rate run (default 10)")
    parser.add_argument(
        "--connections", type=int, default=32, help="wrk connections for reads and renames (default 32)"
    )
    parser.add_argument("--create-connections", type=int, default=4, help="wrk connections for creation (default 4)")
    parser.add_argument(
        "--fill-seconds", type=int, default=20, help="seconds of renames that fill the outbox (default 20)"
    )
    parser.add_argument(
        "--relay-batch", type=int, default=500, help="events per batch of the draining relay (default 500)"
    )
    parser.add_argument("--rate", type=int, default=50, help="changes/s of the latency test (default 50)")
    parser.add_argument("--latency-seconds", type=int, default=30, help="length of the latency test (default 30)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (Debian: apt-get install wrk)")
    os.sched_setaffinity(0, {args.load_cpu})
    header(args)
    verdicts: list[str] = []

    def report(name: str, value: str, note: str = "") -> None:
        print(f"{name:<52} {value:>16}  {note}", flush=True)

    def target(name: str, met: bool, detail: str) -> None:
        verdicts.append(f"{'MET   ' if met else 'MISSED'} {name}: {detail}")

    with tempfile.TemporaryDirectory() as folder:
        users_db = f"sqlite:///{folder}/users.db"
        nowhere = f"http://127.0.0.1:{free_port()}/"
        port = free_port()
        base = f"http://127.0.0.1:{port}"

        before, before_cpu = hash_rate(args.server_cpu, args.seconds)
        report(
            "raw argon2id (m=19 MiB, t=2, p=1), 1 thread, before",
            f"{before:,.1f} hash/s",
            f"{before_cpu:.2f} ms CPU/hash",
        )
        with server(users_command(users_db, port, nowhere, relay=False), args.server_cpu, port) as proc:
            created = wrk(
                str(HERE / "create.lua"),
                base + "/v1/users",
                args.create_connections,
                args.seconds,
                args.load_cpu,
                proc.pid,
            )
            after, after_cpu = hash_rate(args.server_cpu, args.seconds)
            report(
                "raw argon2id (m=19 MiB, t=2, p=1), 1 thread, after",
                f"{after:,.1f} hash/s",
                f"{after_cpu:.2f} ms CPU/hash",
            )
            ratio = created["rps"] / statistics.mean([before, after])
            by_cpu = statistics.mean([before_cpu, after_cpu]) / (created["cpu_us"] / 1000)
            report(
                f"POST /v1/users, {args.create_connections} conns",
                f"{created['rps']:,.1f} users/s",
                f"{ratio:.3f} of raw argon2id; server CPU {created['cpu_us'] / 1000:.2f} ms/user "
                f"({by_cpu:.3f} of it hashing, by CPU time); p99 {created['p99']:.0f} ms; "
                f"non-2xx {created['non2xx']:.0f}",
            )
            target("creation / raw argon2id >= 0.85", ratio >= CREATE_RATIO_TARGET, f"{ratio:.3f}")

            ids = user_ids(base)
            ids_file = Path(folder) / "ids.txt"
            ids_file.write_text("\n".join(ids) + "\n")
            os.environ["USER_IDS"] = str(ids_file)
            reads = wrk(str(HERE / "read.lua"), base, args.connections, args.seconds, args.load_cpu, proc.pid)
            report(
                f"GET /v1/users/{{id}} over {len(ids)} users, {args.connections} conns",
                f"{reads['rps']:,.0f} req/s",
                f"p99 {reads['p99']:.1f} ms; non-2xx {reads['non2xx']:.0f}; "
                f"server CPU {reads['cpu_us']:.0f} us/request (= {1e6 / reads['cpu_us']:,.0f}/s on a whole core)",
            )
            target("reads >= 5,000/s on one core", reads["rps"] >= READS_TARGET, f"{reads['rps']:,.0f}/s")

            renames = wrk(str(HERE / "rename.lua"), base, args.connections, args.fill_seconds, args.load_cpu, proc.pid)
            report(
                f"PATCH /v1/users/{{id}} (fills the outbox), {args.connections} conns",
                f"{renames['rps']:,.0f} changes/s",
                f"p99 {renames['p99']:.1f} ms; non-2xx {renames['non2xx']:.0f}; "
                f"server CPU {renames['cpu_us']:.0f} us/change",
            )
            rss_fill = peak_rss_mib(proc.pid)
        pending = pending_events(f"{folder}/users.db")  # once the service stopped: requests wrk left in flight count
        report("users process (creation, reads, renames), peak RSS", f"{rss_fill:,.0f} MiB")

        drained = drain(users_db, pending, args.server_cpu, args.load_cpu, args.relay_batch)
        report(
            f"outbox -> audit over HTTP, batch mode, {args.relay_batch}/batch",
            f"{drained['rate']:,.0f} ev/s",
            f"{pending:,} events in {drained['seconds']:.2f} s (outbox empty at {drained['emptied']:.2f} s); "
            f"{drained['rate_recorded']:,.0f} ev/s first to last recordedtime; stored {drained['events']:,.0f} "
            f"({drained['unique']:,.0f} distinct); backlog after {drained['backlog_after']:.0f}",
        )
        report("relay process (drain), peak RSS", f"{drained['relay_rss']:,.0f} MiB")
        complete = drained["events"] == drained["unique"] == pending and drained["backlog_after"] == 0
        target(
            "outbox -> audit drain >= 5,000 events/s (batch)",
            drained["rate"] >= DRAIN_TARGET and complete,
            f"{drained['rate']:,.0f}/s" + ("" if complete else " (INCOMPLETE)"),
        )

        audit_port, port = free_port(), free_port()
        audit_url, base = f"http://127.0.0.1:{audit_port}", f"http://127.0.0.1:{port}"
        with (
            server(audit_command(f"sqlite:///{folder}/audit-latency.db", audit_port), args.load_cpu, audit_port),
            server(users_command(users_db, port, audit_url + "/", relay=True), args.server_cpu, port) as proc,
        ):
            paced = asyncio.run(latency(base, audit_url, ids, args.rate, args.latency_seconds))
            rss_relay_on = peak_rss_mib(proc.pid)
        complete = paced["seen"] == paced["sent"] - paced["failures"] and paced["failures"] == 0
        report(
            f"commit -> audit live tail at {args.rate} changes/s, p99",
            f"{paced['p99']:,.0f} ms",
            f"p50 {paced['p50']:.0f} ms, max {paced['max']:.0f} ms; {paced['seen']:,.0f} of {paced['sent']:,.0f} "
            f"seen, {paced['failures']:.0f} failed, achieved {paced['achieved']:.1f}/s; "
            f"PATCH answered p99 {paced['answer_p99']:.0f} ms",
        )
        report("users process with relay (latency test), peak RSS", f"{rss_relay_on:,.0f} MiB")
        target(
            "commit-to-queryable p99 <= 1 s at 50 changes/s",
            paced["p99"] <= LATENCY_P99_TARGET_MS and complete,
            f"{paced['p99']:,.0f} ms" + ("" if complete else " (INCOMPLETE)"),
        )
        peak = max(rss_fill, rss_relay_on, drained["relay_rss"])
        target("users process (relay included) < 250 MiB peak RSS", peak < RSS_TARGET_MIB, f"{peak:,.0f} MiB")
    print("\n".join(verdicts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
