"""The read API: query, live tail (SSE), export, stats; health and metrics."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response, StreamingResponse

from eventaudit import operations
from eventaudit.audit import auth
from eventaudit.audit.metrics import AuditMetrics
from eventaudit.audit.settings import AuditSettings
from eventaudit.audit.store import AuditStore, EventFilter, Record
from eventaudit.events import types
from eventaudit.problems import ProblemError

_encoder = msgspec.json.Encoder()
_KEEPALIVE_SECONDS = 15.0
_POLL_SECONDS = 1.0
MAX_SEQ = 2**63 - 1
"""The largest seq a database column holds (a signed 64-bit integer)."""


class Notifier:
    """Wakes live tails when the writer committed something (other processes: polling).

    :meth:`close` (the server begins to stop) ends every live tail, so that shutdown
    need not wait for clients that would stay forever; they reconnect with Last-Event-ID.
    """

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.closed = False

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    def close(self) -> None:
        self.closed = True
        self.notify()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


def rfc3339(micros: int) -> str:
    """A µs timestamp as RFC 3339 UTC with microseconds."""
    return datetime.fromtimestamp(micros / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def item(record: Record) -> dict[str, Any]:
    """One item of a read answer: seq, recordedtime and the event in the JSON format."""
    return {
        "seq": record.seq,
        "recordedtime": rfc3339(record.recordedtime),
        "event": msgspec.Raw(record.event.encode()),
    }


def _micros(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not types.is_timestamp(value):
        raise ProblemError(
            400, f"{name} must be an RFC 3339 timestamp, like 2026-11-27T10:00:00Z", slug="invalid-parameter"
        )
    return types.timestamp_micros(value)


def _text(name: str, value: str | None) -> str | None:
    if value is not None and not types.is_string(value):
        raise ProblemError(
            400, f"{name} holds control characters, which no CloudEvents attribute can", slug="invalid-parameter"
        )
    return value


def filters(
    type: Annotated[
        str | None, Query(description="Exact type, or a prefix ending in * (user.*)", max_length=512)
    ] = None,
    source: Annotated[str | None, Query(max_length=2048)] = None,
    subject: Annotated[str | None, Query(max_length=2048)] = None,
    id: Annotated[str | None, Query(max_length=512)] = None,
    since: Annotated[
        str | None, Query(description="RFC 3339; inclusive", json_schema_extra={"format": "date-time"})
    ] = None,
    until: Annotated[
        str | None, Query(description="RFC 3339; exclusive", json_schema_extra={"format": "date-time"})
    ] = None,
    on: Annotated[Literal["recordedtime", "time"], Query(description="What since/until compare with")] = "recordedtime",
) -> EventFilter:
    """The filters every read takes."""
    return EventFilter(
        type=_text("type", type),
        source=_text("source", source),
        subject=_text("subject", subject),
        id=_text("id", id),
        since=_micros("since", since),
        until=_micros("until", until),
        on=on,
    )


def _streamed(description: str, *media_types: str) -> dict[str, Any]:
    """The OpenAPI answer of a streamed route: its media types, not JSON."""
    return {"description": description, "content": {media: {"schema": {"type": "string"}} for media in media_types}}


def _encode_cursor(seq: int, order: str) -> str:
    return base64.urlsafe_b64encode(_encoder.encode({"after": seq, "order": order})).decode().rstrip("=")


def _decode_cursor(cursor: str, order: str) -> int:
    try:
        state = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after, cursor_order = state["after"], state["order"]
        if type(after) is not int or not 0 <= after <= MAX_SEQ or cursor_order not in ("asc", "desc"):
            raise ValueError
    except (ValueError, KeyError, TypeError, binascii.Error, msgspec.MsgspecError):
        raise ProblemError(400, "cursor is not one this service gave out", slug="invalid-parameter") from None
    if cursor_order != order:
        raise ProblemError(400, f"cursor was made for order={cursor_order}", slug="invalid-parameter")
    return int(after)


_Filter = Annotated[EventFilter, Depends(filters)]


def router(
    settings: AuditSettings,
    store: AuditStore,
    metrics: AuditMetrics,
    notifier: Notifier,
    ready: Callable[[], None] | None = None,
) -> APIRouter:
    """The read, health and metrics routes; ``ready`` (default: the database answers) backs ``/readyz``."""

    def reader(request: Request) -> None:
        auth.require(request, settings.read_tokens, "reading the audit log")

    reads = APIRouter(
        prefix="/v1",
        tags=["read"],
        dependencies=[Depends(reader)],
        responses={401: {"description": "No read token, or not one of this service's (`Authorization: Bearer …`)."}},
    )
    ops = operations.router(ready or store.ping, metrics.registry)

    @reads.get("/events", summary="Find events (newest or oldest first), a page at a time")
    async def find(
        where: _Filter,
        order: Literal["asc", "desc"] = "asc",
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=200)] = None,
    ) -> Response:
        after = _decode_cursor(cursor, order) if cursor else None
        records = await run_in_threadpool(store.find, where, order=order, limit=limit, after=after)
        if order == "asc":  # the log only grows at the end: asc always has a place to go on from
            next_cursor: str | None = _encode_cursor(records[-1].seq if records else (after or 0), order)
        else:
            next_cursor = _encode_cursor(records[-1].seq, order) if len(records) == limit else None
        body = {"items": [item(r) for r in records], "next_cursor": next_cursor}
        return Response(_encoder.encode(body), media_type="application/json")

    @reads.get(
        "/events/stream",
        summary="Live tail as Server-Sent Events, resumable with Last-Event-ID",
        response_class=StreamingResponse,
        responses={200: _streamed("`id:` the seq, `data:` an item as /v1/events gives it.", "text/event-stream")},
    )
    async def stream(
        request: Request,
        where: _Filter,
        after: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="Start after this seq (default: now)")] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> StreamingResponse:
        if last_event_id is not None:
            if not (last_event_id.isascii() and last_event_id.isdigit() and int(last_event_id) <= MAX_SEQ):
                raise ProblemError(400, "Last-Event-ID must be a seq (the id: of an event)", slug="invalid-parameter")
            after = int(last_event_id)
        if after is None:
            after = await run_in_threadpool(store.last_seq)
        return StreamingResponse(
            _tail(request, store, notifier, where, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @reads.get(
        "/events/export",
        summary="Every matching event, streamed: JSON lines (re-ingestible) or CSV",
        response_class=StreamingResponse,
        responses={
            200: _streamed(
                "format=jsonl: one event per line in the JSON event format; format=csv: a row per event.",
                "application/x-ndjson",
                "text/csv",
            )
        },
    )
    async def export(where: _Filter, format: Literal["jsonl", "csv"] = "jsonl") -> StreamingResponse:
        if format == "jsonl":
            return StreamingResponse(_jsonl(store, where), media_type="application/x-ndjson")
        return StreamingResponse(
            _csv(store, where),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )

    @reads.get("/stats", summary="Counts per time bucket, by type or source, for charts")
    async def stats(
        where: _Filter, bucket: Literal["minute", "hour", "day"] = "hour", by: Literal["type", "source"] = "type"
    ) -> Response:
        rows = await run_in_threadpool(store.stats, where, bucket=bucket, by=by)
        buckets: list[dict[str, Any]] = []
        for start, key, count in rows:
            if not buckets or buckets[-1]["start"] != rfc3339(start):
                buckets.append({"start": rfc3339(start), "counts": {}})
            buckets[-1]["counts"][key] = count
        return Response(
            _encoder.encode({"bucket": bucket, "by": by, "buckets": buckets}), media_type="application/json"
        )

    routes = APIRouter()
    routes.include_router(reads)
    routes.include_router(ops)
    return routes


async def _tail(
    request: Request, store: AuditStore, notifier: Notifier, where: EventFilter, after: int
) -> AsyncIterator[bytes]:
    yield b": eventaudit live tail\n\n"
    quiet = 0.0
    while not notifier.closed and not await request.is_disconnected():
        records = await run_in_threadpool(store.find, where, order="asc", limit=500, after=after)
        for record in records:
            yield b"id: %d\nevent: cloudevent\ndata: %s\n\n" % (record.seq, _encoder.encode(item(record)))
        if records:
            after = records[-1].seq
            quiet = 0.0
            continue
        await notifier.wait(_POLL_SECONDS)
        quiet += _POLL_SECONDS
        if quiet >= _KEEPALIVE_SECONDS:
            quiet = 0.0
            yield b": keepalive\n\n"


async def _jsonl(store: AuditStore, where: EventFilter) -> AsyncIterator[bytes]:
    chunks = store.iterate(where)
    while (records := await run_in_threadpool(next, chunks, None)) is not None:
        yield "".join(f"{r.event}\n" for r in records).encode()


_CSV_COLUMNS = ("seq", "recordedtime", "id", "source", "type", "subject", "time", "datacontenttype", "event")


async def _csv(store: AuditStore, where: EventFilter) -> AsyncIterator[bytes]:
    yield (",".join(_CSV_COLUMNS) + "\r\n").encode()
    chunks = store.iterate(where)
    while (records := await run_in_threadpool(next, chunks, None)) is not None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        for r in records:
            event = msgspec.json.decode(r.event)
            writer.writerow(
                [
                    r.seq,
                    rfc3339(r.recordedtime),
                    event["id"],
                    event["source"],
                    event["type"],
                    event.get("subject", ""),
                    event.get("time", ""),
                    event.get("datacontenttype", ""),
                    r.event,
                ]
            )
        yield buffer.getvalue().encode()
