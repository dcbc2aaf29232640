"""The users service's composition root: ``create_app(settings)``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from eventaudit import __version__, db, httpserver, problems
from eventaudit.transport import Sender
from eventaudit.transport.sinks import open_sender
from eventaudit.users import api, migrate
from eventaudit.users.fast_read import FastRead
from eventaudit.users.metrics import UsersMetrics
from eventaudit.users.relay import Relay, RelayOptions
from eventaudit.users.service import UnitOfWork, UserService
from eventaudit.users.settings import UsersSettings

_log = logging.getLogger(__name__)
_RELAY_STOP_SECONDS = 15.0


def create_app(settings: UsersSettings) -> FastAPI:
    """The users service as an ASGI app; the database is opened (and migrated) on startup, and the
    relay runs beside the API when ``settings.relay`` is on.

    Raises:
        SettingsError: settings the service refuses to start with (see :meth:`UsersSettings.check`).
    """
    settings.check()
    metrics = UsersMetrics()
    writer = db.create(settings.db, writer=True)
    reader = writer if db.is_sqlite(writer) and ":memory:" in settings.db else db.create(settings.db)
    uow = UnitOfWork(writer, reader)
    service = UserService(settings.source)
    relay_box: list[Relay] = []

    def wake_relay() -> None:
        for relay in relay_box:
            relay.wake()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate:
            await asyncio.to_thread(migrate.upgrade, writer)
        db.bound_lock_waits(writer, settings.lock_timeout)
        writer.dispose()  # a migration may wait for locks as long as it must; from here on writes may not
        sender = open_sender_for(settings)
        task = None
        relay_engine = writer
        if settings.relay and reader is not writer:  # (an in-memory database has one connection)
            relay_engine = db.create(settings.db, writer=True)
            db.bound_lock_waits(relay_engine, settings.lock_timeout)
            db.relax_durability(relay_engine)  # the relay's own writes are redone if lost
        if settings.relay:
            relay = Relay(relay_engine, sender, relay_options(settings), metrics)
            relay_box.append(relay)
            app.state.relay = relay
            task = asyncio.create_task(relay.run(), name="outbox-relay")
        _log.info("users service on %s ready (relay %s)", db.redact(settings.db), "on" if task else "off")
        try:
            yield
        finally:
            if task is not None:
                relay_box[0].stop()
                try:
                    await asyncio.wait_for(task, _RELAY_STOP_SECONDS)
                except TimeoutError:
                    _log.warning("the relay did not stop in %.0f s; its leases will expire", _RELAY_STOP_SECONDS)
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await sender.close()
            if relay_engine is not writer:
                relay_engine.dispose()
            uow.dispose()

    app = FastAPI(
        title="eventaudit users service",
        version=__version__,
        summary="User accounts whose every change is published as a CloudEvent (transactional outbox).",
        lifespan=lifespan,
    )
    problems.install(app)
    app.include_router(api.router(settings, uow, service, metrics, on_change=wake_relay))
    # Outermost, before FastAPI's own middleware: reading one user is the hot path and needs none of it.
    httpserver.wrap_outermost(app, lambda inner: FastRead(inner, uow))
    app.state.uow = uow
    app.state.metrics = metrics
    return app


def relay_options(settings: UsersSettings) -> RelayOptions:
    """The relay's options from the service settings."""
    return RelayOptions(
        batch=settings.batch,
        concurrency=settings.relay_concurrency,
        poll=settings.relay_poll,
        lease=settings.relay_lease,
        retry_base=settings.retry_base,
        retry_max=settings.retry_max,
        keep_sent=settings.keep_sent,
        batch_mode=settings.sink_mode == "batch",
    )


def open_sender_for(settings: UsersSettings) -> Sender:
    """The relay's sender for ``settings.sink`` (HTTP or Kafka)."""
    return open_sender(
        settings.sink,
        mode=settings.sink_mode,
        token=settings.sink_token,
        timeout=settings.relay_timeout,
        kafka_options=settings.kafka_options,
    )
