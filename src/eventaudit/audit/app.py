"""The audit service's composition root: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from eventaudit import __version__, db, httpserver, problems
from eventaudit.audit import api, ingest_http, migrate
from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.service import GroupCommitter
from eventaudit.audit.settings import AuditSettings, SettingsError
from eventaudit.audit.store import AuditStore

if TYPE_CHECKING:
    from eventaudit.audit.ingest_kafka import KafkaIngest

_log = logging.getLogger(__name__)


def create_app(settings: AuditSettings) -> FastAPI:
    """The audit service as an ASGI app; the database is opened (and migrated) on startup.

    Raises:
        SettingsError: settings the service refuses to start with (see :meth:`AuditSettings.check`).
    """
    settings.check()
    metrics = AuditMetrics()
    notifier = api.Notifier()
    writer = db.create(settings.db, writer=True)
    reader = writer if db.is_sqlite(writer) and ":memory:" in settings.db else db.create(settings.db)
    store = AuditStore(writer, reader)
    committer = GroupCommitter(store, metrics, window=settings.commit_window, max_events=settings.max_group_events)
    consumer = None if settings.kafka_bootstrap is None else _kafka_ingest(settings, committer, metrics)

    def ready() -> None:
        store.ping()
        if consumer is not None:
            consumer.check_ready()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            await asyncio.to_thread(migrate.upgrade, writer)
        db.bound_lock_waits(writer, settings.lock_timeout)
        if reader is not writer:  # (an in-memory database lives only as long as its one connection)
            writer.dispose()  # a migration may wait for locks as long as it must; from here on appends may not
        loop = asyncio.get_running_loop()

        def wake_tails(_seq: int) -> None:
            loop.call_soon_threadsafe(notifier.notify)

        committer.on_commit = wake_tails
        committer.start()
        metrics.last_seq.set(await asyncio.to_thread(store.last_seq))
        if consumer is not None:
            consumer.start()
        _log.info("audit log at %s ready", db.redact(settings.db))
        try:
            yield
        finally:
            if consumer is not None:  # first: it finishes its round through the committer
                await asyncio.to_thread(consumer.stop)
            await asyncio.to_thread(committer.close)
            writer.dispose()
            reader.dispose()

    app = FastAPI(
        title="eventaudit audit service",
        version=__version__,
        summary="A durable, deduplicated, tamper-evident log of CloudEvents.",
        lifespan=lifespan,
    )
    problems.install(app)

    endpoint = ingest_http.IngestEndpoint(settings, committer, metrics)
    app.include_router(ingest_http.router(settings, endpoint))
    # Ingest is the hot path and needs no middleware: our HTTP protocol answers ``POST /`` itself
    # (no ASGI per request); other servers get the ASGI shortcut, outermost in FastAPI's stack.
    app.state.direct_routes = {(b"POST", b"/"): ingest_http.DirectIngest(endpoint)}
    httpserver.wrap_outermost(app, lambda inner: ingest_http.FastIngest(inner, endpoint))
    app.include_router(api.router(settings, store, metrics, notifier, ready))
    app.state.store = store
    app.state.kafka = consumer
    app.state.metrics = metrics
    app.state.on_stop = [notifier.close]  # httpserver.Server: live tails end when the server begins to stop
    return app


def _kafka_ingest(settings: AuditSettings, committer: GroupCommitter, metrics: AuditMetrics) -> KafkaIngest:
    from confluent_kafka import KafkaException

    from eventaudit.audit.ingest_kafka import KafkaIngest, KafkaIngestSettings

    assert settings.kafka_bootstrap is not None
    try:
        return KafkaIngest(
            KafkaIngestSettings(
                bootstrap=settings.kafka_bootstrap,
                topic=settings.kafka_topic,
                group=settings.kafka_group,
                options=settings.kafka_options,
                max_size=settings.max_body,
            ),
            committer,
            metrics,
        )
    except KafkaException as exc:
        raise SettingsError(f"--kafka-option: {exc.args[0].str()}") from None
