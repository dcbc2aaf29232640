"""The ``eventaudit`` command: builds settings once, from flags and EVENTAUDIT_* variables, and hands them down.

Every flag ``--some-flag`` can also be set with the environment variable
``EVENTAUDIT_SOME_FLAG`` (flags win). Repeatable flags take a comma-separated list there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from eventaudit import __version__, argtypes

_EXAMPLES = """\
examples:
  eventaudit audit                                  # audit service on 127.0.0.1:8080, SQLite in ./data
  eventaudit audit --db postgresql://localhost/audit --host 0.0.0.0 --read-token $TOKEN
  eventaudit audit --kafka-bootstrap 127.0.0.1:9092  # also consume the Kafka topic audit
  eventaudit users --sink kafka://127.0.0.1:9092/audit  # users service whose relay produces to Kafka
  eventaudit up --transport kafka                   # everything, through a development broker
  eventaudit send http://127.0.0.1:8080/ --type user.created --source /users --data '{"id": "42"}'
  eventaudit tail http://127.0.0.1:8080 --token $TOKEN --type 'user.*'
  eventaudit verify --db sqlite:///data/audit.db

Every flag can also come from EVENTAUDIT_<FLAG>, e.g. --db <-> EVENTAUDIT_DB.
"""


class _EnvDefaults(argparse.ArgumentParser):
    """An argument parser whose flags default to ``EVENTAUDIT_<FLAG>`` when that is set.

    A value from the environment is checked like one from the command line (type and
    choices), and a bad one is an error naming the variable (unless the flag itself is given and
    replaces it). On the command line a repeatable flag replaces the list from the environment.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._env_problems: dict[str, str] = {}

    def add_argument(self, *names: Any, **kwargs: Any) -> argparse.Action:
        longs = [n for n in names if isinstance(n, str) and n.startswith("--")]
        action = kwargs.get("action")
        if not longs or action in ("help", "version"):
            return super().add_argument(*names, **kwargs)
        variables = ["EVENTAUDIT_" + long[2:].upper().replace("-", "_") for long in longs]
        variable, value = next(((v, os.environ[v]) for v in variables if v in os.environ), (variables[0], None))
        if action in ("store_true", "store_false"):
            if value is not None:
                kwargs["default"] = self._flag(variable, value, action == "store_true")
        elif value is not None:
            kwargs["required"] = False
            kwargs["type"] = _from_env(variable, value, kwargs.get("type"), kwargs.get("choices"))
            if action == "append":
                kwargs["action"] = _AppendOverEnv
                kwargs["default"] = [v.strip() for v in value.split(",") if v.strip()]
            else:
                kwargs["default"] = value
        kwargs["help"] = ((kwargs.get("help") or "") + " [env " + " or ".join(variables) + "]").lstrip()
        return super().add_argument(*names, **kwargs)

    def _flag(self, variable: str, value: str, when_true: bool) -> bool:
        text = value.strip().lower()
        if text in ("1", "true", "yes", "on"):
            return when_true
        if text in ("", "0", "false", "no", "off"):
            return not when_true
        self._env_problems[variable] = f"{variable}={value!r} is not a yes/no value (use 1/0, true/false, yes/no)"
        return not when_true

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, rest = super().parse_known_args(args, namespace)
        if self._env_problems:
            self.error(next(iter(self._env_problems.values())))
        return parsed, rest


class _AppendOverEnv(argparse.Action):
    """``append``, except that values on the command line replace the list from the environment."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        current = getattr(namespace, self.dest, None)
        items = [] if current is None or current is self.default else list(current)
        setattr(namespace, self.dest, [*items, values])


def _from_env(variable: str, value: str, convert: Callable[[str], Any] | None, choices: Any) -> Callable[[str], Any]:
    """A flag's ``type`` that names ``variable`` when the value it refuses came from there."""

    def checked(text: str) -> Any:
        where = f" (from {variable})" if text == value or text in value.split(",") else ""
        if choices is not None and text not in choices:
            raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(map(str, choices))}{where}")
        if convert is None:
            return text
        try:
            return convert(text)
        except (argparse.ArgumentTypeError, ValueError) as exc:
            raise argparse.ArgumentTypeError(f"{exc}{where}") from None

    checked.__name__ = getattr(convert, "__name__", "value")
    return checked


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``eventaudit`` and its subcommands."""
    parser = _EnvDefaults(
        prog="eventaudit",
        description=(
            "A users service and an append-only, tamper-evident audit log that speak CloudEvents 1.0 "
            "over HTTP or Kafka."
        ),
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"eventaudit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_EnvDefaults)

    audit = commands.add_parser(
        "audit",
        help="run the audit service (receives CloudEvents, keeps the log, serves reads)",
        description="Run the audit service: POST / takes CloudEvents (and, with --kafka-bootstrap, a consumer "
        "in a group reads them from a Kafka topic into the same log); /v1/events, /v1/events/stream, "
        "/v1/events/export and /v1/stats serve them back; /docs shows the API. SIGTERM stops it gracefully "
        "(exit 0); exit 2 when the flags or the database cannot be used.",
    )
    audit.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    audit.add_argument("--port", type=argtypes.port, default=8080, help="port to listen on (default 8080)")
    audit.add_argument(
        "--db",
        default="sqlite:///data/audit.db",
        help="sqlite:///PATH or postgresql://… (default sqlite:///data/audit.db)",
    )
    audit.add_argument(
        "--read-token",
        action="append",
        default=[],
        help="bearer token for reads; repeat for several. Without one on a loopback address, "
        "one is generated and printed",
    )
    audit.add_argument("--ingest-token", help="bearer token POST / requires (default: none required)")
    audit.add_argument(
        "--max-body", type=argtypes.positive, default=1024 * 1024, help="largest request body in bytes (default 1 MiB)"
    )
    argtypes.add_request_timeout(audit)
    argtypes.add_cpu_scheduling(audit)
    audit.add_argument(
        "--allowed-origin",
        action="append",
        default=[],
        help="origin allowed by the webhook handshake (OPTIONS /); repeat for several (default: any)",
    )
    audit.add_argument(
        "--allowed-rate", type=argtypes.positive, help="requests per minute announced in WebHook-Allowed-Rate"
    )
    audit.add_argument(
        "--commit-window-ms",
        type=argtypes.milliseconds,
        default="0.5",  # a string, so argparse runs it through argtypes.milliseconds too
        help="longest a commit waits, once it has a request, for as many as the round before had (those "
        "it answered, plus those that came meanwhile); it commits as soon as they are in (default 0.5; "
        "0: a commit takes only what arrived while the one before it was being written). Fewer, larger "
        "commits cost less CPU per event; an answer waits at most this much longer",
    )
    audit.add_argument(
        "--kafka-bootstrap",
        metavar="HOST:PORT[,HOST:PORT]",
        help="also consume CloudEvents from Kafka: these brokers (default: no consumer, HTTP only)",
    )
    audit.add_argument(
        "--kafka-topic", default="audit", help="the topic to consume (default audit; dead letters go to TOPIC.dlq)"
    )
    audit.add_argument("--kafka-group", default="audit-group-id", help="the consumer group (default audit-group-id)")
    argtypes.add_kafka_option(audit)
    audit.add_argument("--migrate", action="store_true", help="bring the database schema up to date, then exit")
    audit.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="least severe log records to write to stderr (default info; info logs every request)",
    )
    audit.set_defaults(run=_run_audit)

    verify = commands.add_parser(
        "verify",
        help="check the audit log's hash chain",
        description="Walk the audit log's hash chain. Exit 0 with the count when it holds, "
        "1 naming the first record that was changed, removed or reordered, 2 when the log cannot be read.",
    )
    verify.add_argument("--db", default="sqlite:///data/audit.db", help="the audit database URL")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(run=_run_verify)

    send = commands.add_parser(
        "send",
        help="send one CloudEvent to an HTTP endpoint",
        description="Send one CloudEvent built from flags. Exit 0 when delivered, 1 when the receiver "
        "rejected it, 3 when it could not be delivered now.",
    )
    send.add_argument("url", help="where to POST (http:// or https://), e.g. http://127.0.0.1:8080/")
    send.add_argument("--type", required=True, help="the event type, e.g. user.created")
    send.add_argument("--source", required=True, help="the event source, a URI-reference")
    send.add_argument("--id", help="the event id (default: a new UUID)")
    send.add_argument("--subject", help="the event subject, e.g. the id of the user it is about")
    send.add_argument("--time", help="RFC 3339 (default: now)")
    send.add_argument("--data", help="the data; JSON unless --datacontenttype says otherwise")
    send.add_argument("--datacontenttype", help="media type of --data (default application/json when --data is given)")
    send.add_argument("--dataschema", help="URI of the schema --data adheres to")
    send.add_argument(
        "--ext", action="append", default=[], metavar="NAME=VALUE", help="an extension attribute; repeatable"
    )
    send.add_argument("--mode", choices=["binary", "structured", "batch"], default="binary", help="HTTP content mode")
    send.add_argument(
        "--ingest-token", "--token", metavar="TOKEN", help="bearer token (the audit service's --ingest-token)"
    )
    send.set_defaults(run=_run_send)

    tail = commands.add_parser(
        "tail",
        help="follow the audit log live",
        description="Follow the audit log through its API (Server-Sent Events) and print each event stored "
        "from now on (or from the start), until interrupted. Exit 1 when the service refuses the token or a filter.",
    )
    tail.add_argument(
        "url", nargs="?", default="http://127.0.0.1:8080", help="the audit service (default http://127.0.0.1:8080)"
    )
    tail.add_argument(
        "--read-token",
        "--token",
        metavar="TOKEN",
        help="a read token (one of the audit service's --read-token; from a comma list in the environment, the first)",
    )
    tail.add_argument("--json", action="store_true", help="print JSON lines instead of readable text")
    tail.add_argument("--type", help="only this type, or a prefix like user.*")
    tail.add_argument("--source", help="only events from this source")
    tail.add_argument("--subject", help="only events about this subject")
    tail.add_argument("--from-start", action="store_true", help="print the whole log first, then follow")
    tail.set_defaults(run=_run_tail)

    up = commands.add_parser(
        "up",
        help="run the whole system in one process: users, relay and audit (development)",
        description="Development all-in-one: the users service on --users-port, the audit service on "
        "--audit-port, and the relay between them, with SQLite files under --data. With --transport http "
        "(default) the relay POSTs to the audit service; with --transport kafka it produces to the topic "
        "audit and the audit service consumes it (group audit-group-id), through --kafka-bootstrap, or else a "
        "development broker (Tansu, messages in memory only) started on --kafka-port. "
        "Prints where each part listens, the audit read token, and a curl to try. Ctrl-C stops it.",
    )
    up.add_argument("--host", default="127.0.0.1", help="address both services listen on (default 127.0.0.1)")
    up.add_argument("--users-port", type=argtypes.port, default=3000, help="users service port (default 3000)")
    up.add_argument("--audit-port", type=argtypes.port, default=8080, help="audit service port (default 8080)")
    up.add_argument("--data", default="data", help="folder of the SQLite files (default ./data)")
    up.add_argument("--read-token", help="the audit read token (default: generated and printed)")
    up.add_argument(
        "--transport", choices=["http", "kafka"], default="http", help="how events travel from relay to audit"
    )
    up.add_argument(
        "--kafka-bootstrap",
        metavar="HOST:PORT[,HOST:PORT]",
        help="with --transport kafka: these brokers (default: start a development broker)",
    )
    up.add_argument(
        "--kafka-port", type=argtypes.port, default=9092, help="port of the development broker (default 9092)"
    )
    argtypes.add_kafka_option(up)
    argtypes.add_cpu_scheduling(up)
    up.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    up.set_defaults(run=_run_up)

    from eventaudit.users.cli import add_relay_parser, add_users_parser

    add_users_parser(commands)
    add_relay_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace, argparse.ArgumentParser], int] | None = getattr(args, "run", None)
    if run is None:
        parser.print_help()
        return 0
    try:
        return run(args, parser)
    except KeyboardInterrupt:
        return 130


def _run_audit(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from eventaudit import db
    from eventaudit.audit.settings import AuditSettings, SettingsError, is_loopback

    try:
        db.normalize_url(args.db)
    except db.DatabaseURLError as exc:
        parser.error(str(exc))
    if args.migrate:
        return _migrate(args.db, args.log_level)
    tokens = tuple(args.read_token)
    generated = not tokens and is_loopback(args.host)
    if generated:
        tokens = (secrets.token_urlsafe(24),)
    settings = AuditSettings(
        host=args.host,
        port=args.port,
        db=args.db,
        read_tokens=tokens,
        ingest_token=args.ingest_token,
        max_body=args.max_body,
        request_timeout=args.request_timeout,
        allowed_origins=tuple(args.allowed_origin) or ("*",),
        allowed_rate=args.allowed_rate,
        commit_window=args.commit_window_ms,
        kafka_bootstrap=args.kafka_bootstrap,
        kafka_topic=args.kafka_topic,
        kafka_group=args.kafka_group,
        kafka_options=dict(args.kafka_option),
    )
    try:
        settings.check()
    except SettingsError as exc:
        print(f"eventaudit audit: {exc}", file=sys.stderr)
        return 2
    problem = db.problem(settings.db)
    if problem is not None:
        print(f"eventaudit audit: cannot open the database at {db.redact(settings.db)}: {problem}", file=sys.stderr)
        return 2
    if generated:
        print(f"read token (generated, shown once): {tokens[0]}", file=sys.stderr, flush=True)
    print(f"audit service on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr, flush=True)
    if settings.kafka_bootstrap:
        print(
            f"consuming Kafka topic {settings.kafka_topic} at {settings.kafka_bootstrap} "
            f"in group {settings.kafka_group} (dead letters to {settings.kafka_topic}.dlq)",
            file=sys.stderr,
            flush=True,
        )
    signal.signal(signal.SIGTERM, _stopped)
    from eventaudit import httpserver
    from eventaudit.audit.app import create_app

    httpserver.configure_logging(args.log_level)
    try:
        app = create_app(settings)
    except SettingsError as exc:
        print(f"eventaudit audit: {exc}", file=sys.stderr)
        return 2
    httpserver.set_cpu_scheduling(args.cpu_scheduling)
    httpserver.serve(app, settings.host, settings.port, request_timeout=settings.request_timeout)
    return 0


def _stopped(_signum: int, _frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handling, or re-raised by uvicorn after a graceful stop: exit 0."""
    raise SystemExit(0)


def _migrate(url: str, log_level: str) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from eventaudit import db, httpserver
    from eventaudit.audit import migrate

    httpserver.configure_logging(log_level)

    engine = db.create(url, writer=True)
    try:
        migrate.upgrade(engine)
    except SQLAlchemyError as exc:
        print(f"eventaudit audit: cannot migrate the database at {db.redact(url)}: {db.describe(exc)}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"audit schema at {db.redact(url)} is up to date", file=sys.stderr)
    return 0


def _run_up(args: argparse.Namespace, _parser: argparse.ArgumentParser) -> int:
    from pathlib import Path

    from eventaudit import httpserver
    from eventaudit.audit.settings import SettingsError
    from eventaudit.broker import BrokerError, DevBroker
    from eventaudit.users.settings import SettingsError as UsersSettingsError

    httpserver.configure_logging(args.log_level)
    data = Path(args.data)
    token = args.read_token or secrets.token_urlsafe(24)
    audit_url = f"http://{args.host}:{args.audit_port}"
    users_url = f"http://{args.host}:{args.users_port}"
    audit_db, users_db = f"sqlite:///{data / 'audit.db'}", f"sqlite:///{data / 'users.db'}"
    options = dict(args.kafka_option)
    broker: DevBroker | None = None
    bootstrap: str | None = None
    sink, route = audit_url + "/", f"users outbox -> {audit_url}/"
    if args.transport == "kafka":
        bootstrap = args.kafka_bootstrap
        if bootstrap is None:
            data.mkdir(parents=True, exist_ok=True)
            broker = DevBroker("127.0.0.1", args.kafka_port, log=data / "tansu.log")
            try:
                broker.start()
            except BrokerError as exc:
                print(f"eventaudit up: {exc}", file=sys.stderr)
                return 2
            bootstrap = broker.bootstrap
        sink = f"kafka://{bootstrap}/audit"
        route = f"users outbox -> Kafka topic audit at {bootstrap} -> audit consumer (group audit-group-id)"
        if broker is not None:
            route += (
                f"\n         the broker is a development one (Tansu, log in {data}/tansu.log): it keeps messages "
                "in memory only, so they are gone when it stops"
            )
    try:
        return _up(args, data, token, audit_db, users_db, sink, route, bootstrap, options, users_url, audit_url)
    except (SettingsError, UsersSettingsError) as exc:
        print(f"eventaudit up: {exc}", file=sys.stderr)
        return 2
    finally:
        if broker is not None:
            broker.stop()


def _up(
    args: argparse.Namespace,
    data: Path,
    token: str,
    audit_db: str,
    users_db: str,
    sink: str,
    route: str,
    bootstrap: str | None,
    options: dict[str, str],
    users_url: str,
    audit_url: str,
) -> int:
    from eventaudit import db, httpserver
    from eventaudit.audit import migrate as audit_migrate
    from eventaudit.audit.app import create_app as create_audit
    from eventaudit.audit.settings import AuditSettings
    from eventaudit.users import migrate as users_migrate
    from eventaudit.users.app import create_app as create_users
    from eventaudit.users.settings import UsersSettings

    audit_settings = AuditSettings(
        host=args.host,
        port=args.audit_port,
        db=audit_db,
        read_tokens=(token,),
        migrate=False,
        kafka_bootstrap=bootstrap,
        kafka_options=options,
    )
    users_settings = UsersSettings(
        host=args.host, port=args.users_port, db=users_db, sink=sink, kafka_options=options, migrate=False
    )
    audit_settings.check()
    users_settings.check()
    # One after the other: Alembic keeps its migration context in a module global.
    for upgrade, url in ((audit_migrate.upgrade, audit_db), (users_migrate.upgrade, users_db)):
        engine = db.create(url, writer=True)
        upgrade(engine)
        engine.dispose()
    audit = create_audit(audit_settings)
    users = create_users(users_settings)
    print(
        f"""eventaudit {__version__} is up (transport {args.transport}, SQLite files in {data}/)
  users  {users_url}   POST /v1/users · GET /v1/users · API docs {users_url}/docs
  audit  {audit_url}   GET /v1/events · API docs {audit_url}/docs
  relay  {route}
  audit read token: {token}

Try the write-up's request, then look at the audit log:
  curl -X POST {users_url}/v1/user -H 'Content-Type: application/json' \\
       -d '{{"name": "Ozzy Osbourne", "password": "12345"}}'
  .venv/bin/eventaudit tail {audit_url} --token {token} --from-start
  curl -H 'Authorization: Bearer {token}' '{audit_url}/v1/events?order=desc&limit=5'
Ctrl-C stops everything.""",
        file=sys.stderr,
        flush=True,
    )
    servers = [
        httpserver.server(audit, args.host, args.audit_port, request_timeout=audit_settings.request_timeout),
        httpserver.server(users, args.host, args.users_port, request_timeout=users_settings.request_timeout),
    ]
    signal.signal(signal.SIGTERM, _stopped)  # SIGTERM stops everything gracefully, the broker included
    httpserver.set_cpu_scheduling(args.cpu_scheduling)
    return 0 if httpserver.run_loop(httpserver.serve_together(servers)) else 1


def _run_verify(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from eventaudit import db
    from eventaudit.audit.store import AuditStore
    from eventaudit.audit.verify import verify

    path = _sqlite_file(args.db)
    if path is not None and not path.is_file():
        print(f"eventaudit verify: there is no audit log at {args.db}: {path} does not exist", file=sys.stderr)
        return 2
    try:
        engine = db.create(args.db)
    except db.DatabaseURLError as exc:
        parser.error(str(exc))
    try:
        store = AuditStore(engine)
        progress = None if args.quiet or not sys.stderr.isatty() else _ProgressBar(store.count())
        verdict = verify(store, progress)
    except SQLAlchemyError as exc:
        hint = " (is this an audit database? `eventaudit audit --migrate` creates one)" if _no_table(exc) else ""
        print(
            f"eventaudit verify: cannot read the audit log at {db.redact(args.db)}: {db.describe(exc)}{hint}",
            file=sys.stderr,
        )
        return 2
    finally:
        engine.dispose()
    if progress is not None:
        progress.finish()
    if verdict.ok:
        print(f"OK: {verdict.count} records, chain head {verdict.head_hash.hex()}")
        return 0
    print(f"TAMPERED: record {verdict.seq}: {verdict.problem} ({verdict.count} records before it are intact)")
    return 1


def _sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``None`` for other databases and in-memory ones)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url.removeprefix("sqlite:///").split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).expanduser()


def _no_table(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)


class _ProgressBar:
    def __init__(self, total: int) -> None:
        import time

        self._time = time.monotonic
        self.total = max(total, 1)
        self.done = 0
        self.started = self._time()

    def __call__(self, n: int) -> None:
        self.done += n
        elapsed = max(self._time() - self.started, 1e-9)
        width = 30
        filled = int(width * min(self.done / self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r[{bar}] {self.done:,}/{self.total:,} records, {self.done / elapsed:,.0f}/s")
        sys.stderr.flush()

    def finish(self) -> None:
        sys.stderr.write("\n")


def _run_send(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    import msgspec

    from eventaudit.events import CloudEvent, CloudEventError
    from eventaudit.transport import Delivered, Outcome, Rejected
    from eventaudit.transport.http import HTTPSender, check_url

    try:
        check_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    data: Any = None
    if args.data is not None:
        if args.datacontenttype is None or "json" in args.datacontenttype:
            try:
                data = msgspec.json.decode(args.data)
            except msgspec.DecodeError as exc:
                parser.error(f"--data is not JSON ({exc}); set --datacontenttype for other data")
        else:
            data = args.data
    extensions: dict[str, str] = {}
    for pair in args.ext:
        name, sep, value = pair.partition("=")
        if not sep:
            parser.error(f"--ext takes NAME=VALUE, not {pair!r}")
        extensions[name] = value
    try:
        event = CloudEvent.create(
            type=args.type,
            source=args.source,
            id=args.id,
            subject=args.subject,
            time=args.time,
            data=data,
            datacontenttype=args.datacontenttype,
            dataschema=args.dataschema,
            extensions=extensions,
        )
    except CloudEventError as exc:
        parser.error(f"not a valid CloudEvent: {exc}")

    async def deliver() -> Outcome:
        sender = HTTPSender(args.url, mode=args.mode, token=args.ingest_token)
        try:
            return await sender.send([event])
        finally:
            await sender.close()

    outcome = asyncio.run(deliver())
    if isinstance(outcome, Delivered):
        print(f"sent {event.id} ({outcome.detail})")
        return 0
    if isinstance(outcome, Rejected):
        print(f"eventaudit send: rejected: {outcome.reason}", file=sys.stderr)
        return 1
    print(f"eventaudit send: not delivered, try again later: {outcome.reason}", file=sys.stderr)
    return 3


def _run_tail(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from eventaudit.audit.tail import follow
    from eventaudit.transport.http import check_url

    try:
        check_url(args.url)
    except ValueError as exc:
        parser.error(str(exc))
    token = args.read_token
    if token is not None and token == os.environ.get("EVENTAUDIT_READ_TOKEN"):
        token = token.split(",", 1)[0].strip()  # the audit service's comma list: any one of them reads
    params = {k: v for k, v in {"type": args.type, "source": args.source, "subject": args.subject}.items() if v}
    if args.from_start:
        params["after"] = "0"
    try:
        return asyncio.run(follow(args.url, token, params, as_json=args.json))
    except BrokenPipeError:  # the reader went away (``eventaudit tail | head``): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
