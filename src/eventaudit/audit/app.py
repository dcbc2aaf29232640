"""The audit service's composition root: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from eventaudit import __version__, db, problems
from eventaudit.audit import api, ingest_http, migrate
from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.service import GroupCommitter
from eventaudit.audit.settings import AuditSettings
from eventaudit.audit.store import AuditStore

_log = logging.getLogger(__name__)


def create_app(settings: AuditSettings) -> FastAPI:
    """The audit service as an ASGI app; the database is opened (and migrated) on startup."""
    metrics = AuditMetrics()
    notifier = api.Notifier()
    writer = db.create(settings.db, writer=True)
    reader = writer if db.is_sqlite(writer) and ":memory:" in settings.db else db.create(settings.db)
    store = AuditStore(writer, reader)
    committer = GroupCommitter(store, metrics, window=settings.commit_window, max_events=settings.max_group_events)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            await asyncio.to_thread(migrate.upgrade, writer)
        loop = asyncio.get_running_loop()

        def wake_tails(_seq: int) -> None:
            loop.call_soon_threadsafe(notifier.notify)

        committer.on_commit = wake_tails
        committer.start()
        metrics.last_seq.set(await asyncio.to_thread(store.last_seq))
        _log.info("audit log at %s ready", db.redact(settings.db))
        try:
            yield
        finally:
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

    app.include_router(ingest_http.router(settings, committer, metrics))
    app.include_router(api.router(settings, store, metrics, notifier))
    app.state.store = store
    app.state.metrics = metrics
    return app
