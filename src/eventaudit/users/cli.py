"""The ``users`` and ``relay`` subcommands of ``eventaudit``.

``eventaudit.cli`` owns the parser (and the ``EVENTAUDIT_<FLAG>`` defaults); it hands its
subparsers object to :func:`add_users_parser` and :func:`add_relay_parser`, which add the
subcommands with ``run`` set to :func:`run_users` or :func:`run_relay`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from types import FrameType
from typing import Any

from eventaudit import argtypes
from eventaudit.users.settings import SINK_MODES, SettingsError, UsersSettings

METRICS_PORT = 9464
"""Where ``eventaudit relay`` serves its operator routes unless told otherwise (0: nowhere)."""


def add_users_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``eventaudit users`` to ``subparsers`` (what ``add_subparsers`` returned)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "users",
        help="run the users service (accounts, with every change published as a CloudEvent)",
        description="Run the users service: POST /v1/users (and the write-up's POST /v1/user), GET /v1/users, "
        "GET/PATCH/DELETE /v1/users/{id}; /docs shows the API. Every change writes a CloudEvent to the outbox "
        "in the same transaction, and the relay (on unless --no-relay) delivers the outbox to --sink. "
        "SIGTERM stops it gracefully (exit 0); exit 2 when the flags or the database cannot be used.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=argtypes.port, default=3000, help="port to listen on (default 3000)")
    _common(parser)
    parser.add_argument("--no-relay", action="store_true", help="do not run the relay in this process")
    parser.add_argument(
        "--max-body", type=argtypes.positive, default=64 * 1024, help="largest request body in bytes (default 64 KiB)"
    )
    argtypes.add_request_timeout(parser)
    argtypes.add_cpu_scheduling(parser)
    parser.add_argument("--migrate", action="store_true", help="bring the database schema up to date, then exit")
    parser.set_defaults(run=run_users)
    return parser


def add_relay_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``eventaudit relay`` to ``subparsers`` (what ``add_subparsers`` returned)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "relay",
        help="run the outbox relay alone, or list and re-send parked events",
        description="Deliver the users service's outbox to --sink, in per-user order, until SIGTERM. "
        "Several relays may share one PostgreSQL database. --list-parked shows the events the sink "
        "rejected; --retry-parked makes them pending again (all, or the positions given).",
    )
    _common(parser)
    parser.add_argument("--list-parked", action="store_true", help="print the parked events and exit")
    parser.add_argument(
        "--retry-parked",
        nargs="*",
        type=argtypes.positive,
        metavar="POSITION",
        help="make parked events pending again (all, or those at POSITION…) and exit",
    )
    parser.add_argument(
        "--host",
        dest="metrics_host",
        metavar="HOST",
        default="127.0.0.1",
        help="address of the relay's /healthz, /readyz and /metrics (default 127.0.0.1)",
    )
    parser.add_argument(
        "--metrics-port",
        type=_port_or_off,
        metavar="PORT",
        default=METRICS_PORT,
        help=f"port of /healthz, /readyz (database reachable) and /metrics (sent, parked, backlog, lag); "
        f"0 serves none of them (default {METRICS_PORT}, the Prometheus exporters' conventional port)",
    )
    parser.set_defaults(run=run_relay)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--db",
        default="sqlite:///data/users.db",
        help="sqlite:///PATH or postgresql://… (default sqlite:///data/users.db)",
    )
    parser.add_argument(
        "--sink",
        default="http://127.0.0.1:8080/",
        help="where the relay delivers: the audit service (http://…, default http://127.0.0.1:8080/) or a Kafka "
        "topic (kafka://HOST:PORT[,HOST:PORT]/TOPIC, topic default audit; key = user id, acks=all, idempotent)",
    )
    argtypes.add_kafka_option(parser)
    parser.add_argument(
        "--source",
        default="/eventaudit/users",
        help="the source of every event, a URI-reference (default /eventaudit/users)",
    )
    parser.add_argument(
        "--sink-mode",
        choices=list(SINK_MODES),
        default="binary",
        help="content mode (default binary; batch is HTTP only)",
    )
    parser.add_argument(
        "--sink-token", "--ingest-token", metavar="TOKEN", help="bearer token for the sink (its --ingest-token)"
    )
    parser.add_argument(
        "--relay-batch",
        type=argtypes.positive,
        help="events per relay round (default 200 to an http:// sink, 5000 to kafka://)",
    )
    parser.add_argument(
        "--relay-lease",
        type=argtypes.seconds,
        default="60",
        help="seconds a relay holds the events it sends before another may take them (default 60)",
    )
    parser.add_argument(
        "--sink-timeout", type=argtypes.seconds, default="10", help="seconds to wait for the sink's answer (default 10)"
    )
    parser.add_argument(
        "--retry-max",
        type=argtypes.seconds,
        default="10",
        help="longest wait between two tries of an event (default 10 s)",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log records to write to stderr (default info; info logs every request)",
    )


def settings_of(args: argparse.Namespace) -> UsersSettings:
    """The settings the parsed flags describe."""
    extra: dict[str, Any] = {}
    if hasattr(args, "host"):
        extra.update(
            host=args.host,
            port=args.port,
            max_body=args.max_body,
            request_timeout=args.request_timeout,
            relay=not args.no_relay,
        )
    return UsersSettings(
        db=args.db,
        sink=args.sink,
        source=args.source,
        sink_mode=args.sink_mode,
        sink_token=args.sink_token,
        kafka_options=dict(args.kafka_option),
        relay_batch=args.relay_batch,
        relay_lease=args.relay_lease,
        relay_timeout=args.sink_timeout,
        retry_max=args.retry_max,
        retry_base=min(UsersSettings.retry_base, args.retry_max),
        **extra,
    )


def run_users(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``eventaudit users``: serve until SIGTERM/SIGINT."""
    from eventaudit import db, httpserver

    settings = _checked(args, parser, "users")
    if settings is None:
        return 2
    httpserver.configure_logging(args.log_level)
    if args.migrate:
        return _migrate(settings.db, "users")
    problem = db.problem(settings.db)
    if problem is not None:
        print(f"eventaudit users: cannot open the database at {db.redact(settings.db)}: {problem}", file=sys.stderr)
        return 2
    relay = f"relay on, delivering to {settings.sink} ({settings.sink_mode})" if settings.relay else "relay off"
    print(
        f"users service on http://{settings.host}:{settings.port}/ (API docs at /docs; {relay})",
        file=sys.stderr,
        flush=True,
    )
    signal.signal(signal.SIGTERM, _stopped)
    from eventaudit.users.app import create_app

    httpserver.set_cpu_scheduling(args.cpu_scheduling)
    httpserver.serve(create_app(settings), settings.host, settings.port, request_timeout=settings.request_timeout)
    return 0


def run_relay(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``eventaudit relay``: list or re-send parked events, or relay until SIGTERM/SIGINT."""
    from sqlalchemy.exc import SQLAlchemyError

    from eventaudit import db, httpserver
    from eventaudit.users import migrate, relay

    settings = _checked(args, parser, "relay")
    if settings is None:
        return 2
    administering = args.list_parked or args.retry_parked is not None
    httpserver.configure_logging("warning" if administering else args.log_level)
    engine = db.create(settings.db, writer=True)
    try:
        migrate.upgrade(engine)
        if args.list_parked:
            return _print_parked(relay.list_parked(engine))
        if args.retry_parked is not None:
            count = relay.retry_parked(engine, args.retry_parked or None)
            print(f"{count} parked event{'s' if count != 1 else ''} made pending again")
            return 0
        print(f"relay delivering to {settings.sink} ({settings.sink_mode})", file=sys.stderr, flush=True)
        metrics_at = (args.metrics_host, args.metrics_port) if args.metrics_port else None
        asyncio.run(_relay_until_stopped(settings, engine, metrics_at))
        return 0
    except SQLAlchemyError as exc:
        print(f"eventaudit relay: the database at {db.redact(settings.db)} failed: {db.describe(exc)}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


async def _relay_until_stopped(settings: UsersSettings, engine: Any, metrics_at: tuple[str, int] | None) -> None:
    from eventaudit import db
    from eventaudit.users.app import open_sender_for, relay_options
    from eventaudit.users.metrics import UsersMetrics
    from eventaudit.users.relay import Relay

    db.bound_lock_waits(engine, settings.lock_timeout)
    db.relax_durability(engine)  # the relay's own writes are redone if lost (see db.relax_durability)
    engine.dispose()
    sender = open_sender_for(settings)
    relay = Relay(engine, sender, relay_options(settings), UsersMetrics())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, relay.stop)
    monitor = None
    try:
        monitor = await _start_monitor(settings, relay, metrics_at)
        await relay.run()
    finally:
        if monitor is not None:
            await monitor.stop()
        await sender.close()


class _Monitor:
    """The relay's ``/healthz``, ``/readyz`` and ``/metrics``, served beside it in its event loop."""

    def __init__(self, server: Any, task: asyncio.Task[Any], uow: Any) -> None:
        self.server, self.task, self.uow = server, task, uow

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task
        self.uow.dispose()


async def _start_monitor(settings: UsersSettings, relay: Any, at: tuple[str, int] | None) -> _Monitor | None:
    """Serve the relay's operator routes on ``at`` (host, port); ``None`` when ``at`` is.

    A SIGTERM reaches both the relay (its loop handler) and uvicorn's own. Raises ``SystemExit(2)``
    when the port cannot be served, before anything is relayed.
    """
    if at is None:
        return None
    from fastapi import FastAPI

    from eventaudit import __version__, db, httpserver, operations, problems
    from eventaudit.problems import ProblemError
    from eventaudit.users import repository
    from eventaudit.users.relay import set_backlog_metrics
    from eventaudit.users.service import UnitOfWork, now_micros

    uow = UnitOfWork(relay.engine, db.create(settings.db, pool_size=1))

    async def refresh_backlog() -> None:
        try:
            backlog = await asyncio.to_thread(uow.read, repository.backlog)
        except ProblemError:
            return  # the database is away: the gauges keep their last values
        set_backlog_metrics(relay.metrics, backlog, now_micros())

    app = FastAPI(title="eventaudit relay", version=__version__, openapi_url=None)
    problems.install(app)
    app.include_router(
        operations.router(
            uow.ping,
            relay.metrics.registry,
            refresh=refresh_backlog,
            metrics_summary="Prometheus metrics: events sent and parked, the outbox backlog and lag",
        )
    )
    server = httpserver.server(app, *at, graceful_seconds=5)

    async def serve() -> None:
        with contextlib.suppress(SystemExit):  # how uvicorn says it could not start; a task must not raise it
            await server.serve()

    task = asyncio.create_task(serve(), name="relay-metrics")
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if not server.started:
        uow.dispose()
        await task
        print(f"eventaudit relay: cannot serve /metrics on {at[0]}:{at[1]}", file=sys.stderr)
        raise SystemExit(2)
    print(f"relay metrics on http://{at[0]}:{at[1]}/metrics", file=sys.stderr, flush=True)
    return _Monitor(server, task, uow)


def _port_or_off(text: str) -> int:
    return 0 if text.strip() == "0" else argtypes.port(text)


def _print_parked(rows: list[Any]) -> int:
    import msgspec

    if not rows:
        print("no parked events")
        return 0
    for row in rows:
        event = msgspec.json.decode(row.event)
        print(
            f"position {row.position}  user {row.user_id}  sequence {row.sequence}  {event.get('type')}  "
            f"id {event.get('id')}  attempts {row.attempts}\n  reason: {row.last_error}"
        )
    print(f"{len(rows)} parked; `eventaudit relay --retry-parked [POSITION…]` sends them again")
    return 0


def _checked(args: argparse.Namespace, parser: argparse.ArgumentParser, command: str) -> UsersSettings | None:
    from eventaudit import db

    try:
        db.normalize_url(args.db)
    except db.DatabaseURLError as exc:
        parser.error(str(exc))
    settings = settings_of(args)
    try:
        settings.check()
    except SettingsError as exc:
        print(f"eventaudit {command}: {exc}", file=sys.stderr)
        return None
    return settings


def _migrate(url: str, command: str) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from eventaudit import db
    from eventaudit.users import migrate

    engine = db.create(url, writer=True)
    try:
        migrate.upgrade(engine)
    except SQLAlchemyError as exc:
        print(
            f"eventaudit {command}: cannot migrate the database at {db.redact(url)}: {db.describe(exc)}",
            file=sys.stderr,
        )
        return 2
    finally:
        engine.dispose()
    print(f"users schema at {db.redact(url)} is up to date", file=sys.stderr)
    return 0


def _stopped(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)
