"""Instructions per event of the audit service's ingest, counted by valgrind: the same count for the same
code whatever else the machine does, where a timed run on a shared VM swings by ±25% from minute to minute.

    python -m bench.ingest.instructions [--src PATH ...] [--mode binary|structured] [--servers SECONDS]

For each source tree (``--src``, put first on ``PYTHONPATH``; default: the installed one):

* **loop**: the event loop's side of ``POST /`` without sockets: our httptools protocol fed whole
  requests, the commit answered at once; instructions inside httptools' ``feed_data`` per request
  (parsing, the direct route, the decode, the answer);
* **writer**: ``GroupCommitter._commit`` of groups of 32 single-event requests into SQLite (durable):
  the chain, the rows, the SQL and the bookkeeping, per event (a run of 220 commits less one of 20);
* with ``--servers SECONDS``, also each whole server under wrk (32 connections, binary mode) against
  the baseline (Flask + the SDK's ``from_http``): user-space instructions per request, the start-up and
  shut-down of a run without load subtracted. The kernel's work (sockets, ``fdatasync``) is not counted.

Needs valgrind (and wrk for ``--servers``). Each loop or writer count takes about a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

HERE = Path(__file__).resolve().parent
FEED_DATA = "__pyx_pw_9httptools_6parser_6parser_10HttpParser_13feed_data"  # httptools' Cython entry point
WARM, FED = 2000, 3000
COMMIT = 32


def request(mode: str, n: int) -> bytes:
    """The request bench/ingest's wrk scripts send, the ``n``-th."""
    if mode == "binary":
        body = b'{"id":"%d","name":"Ozzy Osbourne"}' % n
        head = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\ncontent-type: application/json\r\nce-specversion: 1.0\r\n"
            b"ce-type: user.created\r\nce-source: /bench/users\r\nce-id: 1-1-%d\r\nce-subject: %d\r\n"
            b"ce-time: 2026-11-27T10:00:00.123456Z\r\nContent-Length: %d\r\n\r\n" % (n, n, len(body))
        )
    else:
        body = (
            b'{"specversion":"1.0","type":"user.created","source":"/bench/users","id":"1-1-%d","subject":"%d",'
            b'"time":"2026-11-27T10:00:00.123456Z","datacontenttype":"application/json",'
            b'"data":{"id":"%d","name":"Ozzy Osbourne"}}' % (n, n, n)
        )
        head = (
            b"POST / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\ncontent-type: application/cloudevents+json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
    return head + body


def binary_event(n: int) -> Any:
    """The CloudEvent of the ``n``-th binary request, as the HTTP binding decodes it."""
    from eventaudit.events.bindings import http

    fields = request("binary", n).split(b"\r\n\r\n")[0].split(b"\r\n")[1:]
    headers = [tuple(field.decode().split(": ", 1)) for field in fields]
    return http.decode(headers, b'{"id":"%d","name":"Ozzy Osbourne"}' % n).events[0]  # type: ignore[arg-type]


class _AnsweredAtOnce:
    """The committer of the loop count: every submission is stored at once, as seq 1."""

    def submit_nowait(self, events: Any, transport: str, done: Any) -> None:
        from eventaudit.audit.service import Stored

        done(Stored([1]))


class _Transport:
    def __init__(self) -> None:
        self.answers = 0

    def write(self, data: bytes) -> None:
        self.answers += 1

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _loop_child(mode: str) -> None:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from eventaudit.audit.ingest_http import DirectIngest, IngestEndpoint
    from eventaudit.audit.metrics import AuditMetrics
    from eventaudit.audit.settings import AuditSettings
    from eventaudit.httptoolsprotocol import ProblemHttpToolsProtocol

    endpoint = IngestEndpoint(AuditSettings(), _AnsweredAtOnce(), AuditMetrics())  # type: ignore[arg-type]
    app = SimpleNamespace(state=SimpleNamespace(direct_routes={(b"POST", b"/"): DirectIngest(endpoint)}))
    config = Config(app=cast(Any, app), http="httptools", log_level="warning")
    config.load()
    config.loaded_app = app  # served as it is: uvicorn wrapped it as an ASGI2 app, and no direct route looks past that
    protocol = ProblemHttpToolsProtocol(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    requests = [request(mode, n) for n in range(WARM + FED)]
    for data in requests:
        protocol.data_received(data)
    if transport.answers != len(requests):
        raise SystemExit(f"{transport.answers} answers to {len(requests)} requests")


def _writer_child(commits: int) -> None:
    from eventaudit import db
    from eventaudit.audit import migrate
    from eventaudit.audit.metrics import AuditMetrics
    from eventaudit.audit.service import GroupCommitter, _Pending
    from eventaudit.audit.store import AuditStore

    folder = tempfile.mkdtemp()
    engine = db.create(f"sqlite:///{folder}/audit.db", writer=True)
    migrate.upgrade(engine)
    committer = GroupCommitter(AuditStore(engine), AuditMetrics())
    events = [binary_event(n) for n in range(240 * COMMIT)]  # as many in every run: only the commits differ
    for number in range(commits):
        group = events[number * COMMIT : (number + 1) * COMMIT]
        committer._commit([_Pending([event], "http", lambda outcome: None) for event in group])
    stored = AuditStore(engine).count()
    if stored != commits * COMMIT:
        raise SystemExit(f"{stored} events stored of {commits * COMMIT}")


def _env(src: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return env


def _collected(output: str) -> int:
    counts = re.findall(r"Collected : (\d+)", output)
    if not counts:
        raise RuntimeError(f"valgrind reported no count:\n{output[-2000:]}")
    return sum(int(count) for count in counts)


def _callgrind(args: list[str], src: str | None, *extra: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out.%p", *extra]
        done = subprocess.run(
            [*command, sys.executable, "-m", "bench.ingest.instructions", *args],
            env=_env(src),
            capture_output=True,
            text=True,
            cwd=HERE.parent.parent,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{args} failed:\n{done.stderr[-2000:]}")
    return _collected(done.stderr)


def loop_instructions(src: str | None, mode: str) -> float:
    return _callgrind(["--child", "loop", "--mode", mode], src, f"--toggle-collect={FEED_DATA}") / (WARM + FED)


def writer_instructions(src: str | None) -> float:
    few = _callgrind(["--child", "writer", "--commits", "20"], src)
    many = _callgrind(["--child", "writer", "--commits", "220"], src)
    return (many - few) / (200 * COMMIT)


def server_instructions(kind: str, src: str | None, seconds: int) -> tuple[float, int]:
    """User-space instructions per request of a whole server under wrk, and how many requests it answered."""
    from bench.ingest.__main__ import TOKEN, free_port

    def run(load: int) -> tuple[int, int]:
        port = free_port()
        with tempfile.TemporaryDirectory() as folder:
            if kind == "audit":
                server = [sys.executable, "-m", "eventaudit.cli", "audit", "--port", str(port)]
                server += ["--db", f"sqlite:///{folder}/audit.db", "--read-token", TOKEN, "--log-level", "warning"]
            else:
                server = [sys.executable, str(HERE / "baseline_flask.py"), str(port)]
            with open(f"{folder}/valgrind.log", "w+") as log:
                proc = subprocess.Popen(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={folder}/out.%p", *server],
                    env=_env(src if kind == "audit" else None),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                try:
                    _wait_for(port, proc)
                    answered = 0
                    if load:
                        command = ["wrk", "-t1", "-c", "32", "-d", f"{load}s", "-s", str(HERE / "binary.lua")]
                        out = subprocess.run(
                            [*command, f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True
                        ).stdout
                        answered = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
                        if "Non-2xx" in out:
                            raise RuntimeError(f"{kind} refused requests under load:\n{out}")
                finally:
                    proc.send_signal(2 if kind == "audit" else 15)  # uvicorn stops on SIGINT; Flask's server on SIGTERM
                    proc.wait(600)
                log.seek(0)
                output = log.read()
        return _collected(output), answered

    idle, _ = run(0)
    loaded, answered = run(seconds)
    return (loaded - idle) / answered, answered


def _wait_for(port: int, proc: subprocess.Popen[Any]) -> None:
    import httpx

    deadline = time.monotonic() + 300  # valgrind starts Python ~30x slower
    while True:
        try:
            httpx.post(f"http://127.0.0.1:{port}/nothing", timeout=5)
            return
        except httpx.HTTPError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start under valgrind") from None
            time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", help="a source tree to count (repeat; default: the installed one)")
    parser.add_argument("--mode", choices=["binary", "structured"], default="binary")
    parser.add_argument("--servers", type=int, default=0, metavar="SECONDS", help="also whole servers under wrk")
    parser.add_argument("--child", choices=["loop", "writer"], help=argparse.SUPPRESS)
    parser.add_argument("--commits", type=int, default=20, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == "loop":
        import uvloop

        uvloop.run(_loop_child(args.mode))
        return 0
    if args.child == "writer":
        _writer_child(args.commits)
        return 0
    print(f"# python {sys.version.split()[0]}; valgrind --tool=callgrind; instructions counted, not time")
    baseline = None
    if args.servers:
        baseline, answered = server_instructions("flask", None, args.servers)
        print(f"baseline (Flask + SDK from_http), whole server  {baseline:>10,.0f} per request ({answered} requests)")
    for src in args.src or [None]:
        name = src or "installed"
        print(f"{name}: loop, {args.mode} {loop_instructions(src, args.mode):>10,.0f} per request", flush=True)
        print(f"{name}: writer, {COMMIT} per commit {writer_instructions(src):>10,.0f} per event", flush=True)
        if args.servers:
            total, answered = server_instructions("audit", src, args.servers)
            assert baseline is not None
            print(
                f"{name}: whole server, binary {total:>10,.0f} per request ({answered} requests); "
                f"baseline / audit = {baseline / total:.2f}x",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
