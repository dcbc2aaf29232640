"""Running an ASGI app with uvicorn, the way both services want it.

SIGTERM/SIGINT stop accepting, let in-flight requests finish, then run shutdown. Requests
that would never finish on their own (live tails) are told to end first: an app lists
callbacks for that in ``app.state.on_stop``.

The protocols are in :mod:`eventaudit.httpprotocol` and :mod:`eventaudit.httptoolsprotocol`, direct routes
in :mod:`eventaudit.directroute`, the access log in :mod:`eventaudit.accesslog`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final, TypeVar

import uvicorn

from eventaudit import accesslog
from eventaudit.accesslog import AccessLog, ASGIApp
from eventaudit.httplimits import REQUEST_TIMEOUT
from eventaudit.httpprotocol import Config
from eventaudit.httptoolsprotocol import protocol

T = TypeVar("T")
_log = logging.getLogger(__name__)


class JSONFormatter(logging.Formatter):
    """Log records as one JSON object per line (like the write-up's ``httplog``)."""

    _SKIP = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _line_time(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._SKIP})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return _log_encoder.encode(entry)  # as json.dumps(entry, default=str), without an encoder object per line


def _line_time(created: float, msecs: float) -> str:
    return f"{_utc_second(int(created // 1))}.{int(msecs):03d}Z"


class _AccessLines:
    """Writes an access line to the JSON handler itself: the line :class:`JSONFormatter` makes of the
    record ``accesslog`` would log, without the record (``logging`` took ~10 µs per request, more
    than the rest of an ingest request's Python).

    Only while that handler is the one place the line would go (no other handler, no filter on the
    way, as ``logging`` would route it); otherwise it says so and ``logging`` writes the line.
    """

    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        self.handler = handler
        self.logger = logging.getLogger("eventaudit.access")

    def __call__(self, message: str, fields: dict[str, Any]) -> bool:
        handler = self.handler
        if not self._only_to(handler):
            return False
        created = time.time()
        entry = {
            "time": _line_time(created, int((created - int(created)) * 1000)),  # as LogRecord's msecs
            "level": "info",
            "logger": self.logger.name,
            "message": message,
            **fields,  # as the record's extra
        }
        line = _log_encoder.encode(entry) + handler.terminator
        with handler.lock or contextlib.nullcontext():  # as StreamHandler.emit
            try:
                handler.stream.write(line)
                handler.flush()
            except Exception:  # (a closed stream, say): logging reports it its own way
                return False
        return True

    def _only_to(self, handler: logging.Handler) -> bool:
        """Whether ``logging`` would hand an INFO line of the access logger to ``handler`` alone, unfiltered,
        to be formatted by a :class:`JSONFormatter`."""
        logger: logging.Logger | None = self.logger
        if self.logger.filters or self.logger.disabled or handler.filters or handler.level > logging.INFO:
            return False
        if type(handler.formatter) is not JSONFormatter:
            return False
        reached: list[logging.Handler] = []
        while logger is not None:
            reached += logger.handlers
            logger = logger.parent if logger.propagate else None
        return reached == [handler]


_log_encoder = json.JSONEncoder(default=str)


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    """``seconds`` since the epoch as RFC 3339 UTC without the fraction; a log line's second is often the last one's."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def configure_logging(level: str = "info", json_lines: bool | None = None) -> None:
    """Log to stderr: JSON lines, or readable text when stderr is a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JSONFormatter() if json_lines else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    accesslog.direct_writer = _AccessLines(handler) if json_lines else None


class Server(uvicorn.Server):
    """uvicorn's server, calling ``on_stop`` callbacks as soon as it begins to stop, before it waits for requests."""

    def __init__(self, config: uvicorn.Config, on_stop: Iterable[Callable[[], None]] = ()) -> None:
        super().__init__(config)
        self.on_stop = list(on_stop)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        # What start-up built (the app, its routes and schemas, the libraries) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it all again,
        # which took milliseconds of every request's latency under load.
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for callback in self.on_stop:
            callback()
        await super().shutdown(sockets)


def stop_callbacks(app: Any) -> list[Callable[[], None]]:
    """The ``state.on_stop`` callbacks of a Starlette/FastAPI app (none for other ASGI apps)."""
    return list(getattr(getattr(app, "state", None), "on_stop", None) or ())


def server(
    app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 30, request_timeout: float = REQUEST_TIMEOUT
) -> Server:
    """A server for ``app`` with our protocol, access log and stop hooks.

    A request must arrive whole within ``request_timeout`` seconds of its first byte (else 408).
    """
    config = Config(
        AccessLog(app),
        timeout_request=request_timeout,
        host=host,
        port=port,
        http=protocol(),
        loop=LOOP,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,  # X-Forwarded-* are not trusted: the services are not told which proxy to trust
        timeout_graceful_shutdown=graceful_seconds,
    )
    return Server(config, stop_callbacks(app))


#: uvicorn's choice of event loop: uvloop (libuv, in C) where it is installed, as it is on Linux and macOS
#: (a dependency there), asyncio's own elsewhere. With the audit ingest's direct route most of a request's
#: time on the loop thread is the loop's own (reading, writing, dispatching); see docs/benchmarks.md.
LOOP: Final = "auto"


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the event loop :data:`LOOP` picks (for several servers in one loop)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
        return None
    return uvloop.new_event_loop


def set_cpu_scheduling(policy: str) -> bool:
    """Run every thread of this process, and those it starts from now on, as Linux ``SCHED_BATCH``
    (``policy`` ``"batch"``), or leave them as they are (``"inherit"``).

    Why: the event loop and the audit writer (and the users service's relay) are threads of one
    process sharing the GIL. Under normal scheduling, a thread woken by another (a request queued
    for the writer, a commit's answers for the loop) preempts it at once, finds the GIL held and
    sleeps again: two context switches for nothing. A ``SCHED_BATCH`` thread is not run ahead of
    the one that woke it; it runs when that one blocks. Measured under load (docs/benchmarks.md):
    8,400 -> 3,200 context switches/s. Other processes still preempt these threads as usual.

    Returns whether ``policy`` is in effect; ``False`` where the platform has no ``SCHED_BATCH``, or
    refuses it (logged).
    """
    if policy == "inherit":
        return True
    batch = getattr(os, "SCHED_BATCH", None)
    if batch is None or not hasattr(os, "sched_setscheduler"):
        _log.info("--cpu-scheduling batch: this platform has no SCHED_BATCH; scheduling left as it is")
        return False
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]  # the calling one, and any started before
    except OSError:  # no /proc: this thread, and those it starts from now on
        threads = [0]
    changed = 0
    for tid in threads:
        try:
            os.sched_setscheduler(tid, batch, os.sched_param(0))
        except ProcessLookupError:  # a thread that ended meanwhile
            continue
        except OSError as exc:
            _log.warning(
                "--cpu-scheduling batch: refused (%s); %d of %d threads changed, the others left as they are",
                exc,
                changed,
                len(threads),
            )
            return False
        changed += 1
    return True


def serve(
    app: ASGIApp, host: str, port: int, *, graceful_seconds: int = 30, request_timeout: float = REQUEST_TIMEOUT
) -> None:
    """Run ``app`` until SIGINT/SIGTERM; in-flight requests get ``graceful_seconds`` to finish."""
    server(app, host, port, graceful_seconds=graceful_seconds, request_timeout=request_timeout).run()


async def serve_together(servers: list[Server]) -> bool:
    """Run several servers in one event loop; when one stops (a signal, a failure), all stop.

    Returns whether every server started and stopped cleanly.
    """

    async def run(server: Server) -> bool:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits this way when the app's startup fails
            return exc.code in (0, None)
        return server.started

    tasks = [asyncio.create_task(run(s)) for s in servers]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for s in servers:
        s.should_exit = True
    return all(await asyncio.gather(*tasks))


def wrap_outermost(app: Any, wrap: Callable[[Any], Any]) -> None:
    """Put ASGI middleware ``wrap(inner)`` around ``app``'s whole stack, FastAPI's own middleware included.

    For a hot path (the audit service's ingest, the users service's read by id) that needs none of
    that middleware: the wrapper answers what it can and hands the rest to the full stack.
    """
    build = app.build_middleware_stack
    app.build_middleware_stack = lambda: wrap(build())
