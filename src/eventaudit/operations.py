"""The routes every service has for its operators: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from eventaudit.problems import ProblemError


class NotReadyError(RuntimeError):
    """A part the service needs is not working; the message says which and why (the 503's detail)."""


def router(
    ping: Callable[[], None],
    registry: CollectorRegistry,
    *,
    refresh: Callable[[], Awaitable[None]] | None = None,
    metrics_summary: str = "Prometheus metrics",
) -> APIRouter:
    """``/healthz`` (the process answers), ``/readyz`` (``ping`` returns), ``/metrics`` (``registry``).

    ``ping`` raises :class:`NotReadyError` to say what is not ready; any other exception means the
    database is unavailable.

    ``refresh`` runs before each scrape, to update gauges that are read from the database.
    """
    ops = APIRouter(tags=["operations"])

    @ops.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @ops.get(
        "/readyz",
        summary="Readiness: the database answers",
        responses={503: {"description": "Not ready: the detail says what (the database, or another part)."}},
    )
    async def readyz() -> dict[str, str]:
        try:
            await run_in_threadpool(ping)
        except NotReadyError as exc:
            raise ProblemError(503, str(exc), slug="not-ready") from None
        except Exception as exc:
            raise ProblemError(
                503, f"the database is unavailable ({exc.__class__.__name__})", slug="not-ready"
            ) from None
        return {"status": "ready"}

    @ops.get(
        "/metrics",
        summary=metrics_summary,
        response_class=Response,
        responses={
            200: {
                "description": "The Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus() -> Response:
        if refresh is not None:
            await refresh()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return ops
