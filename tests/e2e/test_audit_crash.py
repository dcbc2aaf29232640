"""Crash safety of ``eventaudit audit`` (Promises 4 and 7): kill -9 under load, and SIGTERM with requests in flight.

Sixteen clients post single events and small batches at a real audit process. Whatever the
service answered 2xx must be in the log afterwards, with the seq it reported, exactly once,
and the hash chain must verify.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from eventaudit import db
from eventaudit.audit.models import events as events_table
from eventaudit.events import CloudEvent
from eventaudit.events.bindings import http as http_binding
from tests.e2e.running import AuditService, items, run_cli

pytestmark = pytest.mark.e2e

WORKERS = 16
BATCH_SIZES = (1, 6, 1, 12, 2, 1, 20, 1, 4)  # single events and small batches, in turn
PER_WORKER = 200  # 3,200 events in all


@dataclass(frozen=True)
class Answer:
    """One request that got a 2xx: its events, the seqs the service reported, and when it ran."""

    keys: list[tuple[str, str]]
    seqs: list[int | None]
    started: float
    ended: float


@dataclass
class Load:
    """What the clients saw."""

    answers: list[Answer] = field(default_factory=list)
    connection_failures: Counter[str] = field(default_factory=Counter)
    bad_answers: list[str] = field(default_factory=list)

    def acknowledged(self) -> int:
        return sum(len(answer.keys) for answer in self.answers)

    def acknowledged_seqs(self) -> dict[tuple[str, str], int]:
        return {k: s for a in self.answers for k, s in zip(a.keys, a.seqs, strict=True) if s is not None}


def _chunks(worker: int, count: int, run: str) -> list[list[CloudEvent]]:
    made = [
        CloudEvent.create(type="e2e.load", source=f"/e2e/{run}/worker/{worker}", id=f"{worker}-{n}", data={"n": n})
        for n in range(count)
    ]
    chunks: list[list[CloudEvent]] = []
    while made:
        size = BATCH_SIZES[len(chunks) % len(BATCH_SIZES)]
        chunks.append(made[:size])
        made = made[size:]
    return chunks


def _request(chunk: list[CloudEvent], n: int) -> tuple[dict[str, str], bytes]:
    if len(chunk) > 1:
        return http_binding.encode_batch(chunk)
    return (http_binding.encode_binary if n % 2 else http_binding.encode_structured)(chunk[0])


async def _post(client: httpx.AsyncClient, url: str, chunk: list[CloudEvent], n: int, load: Load) -> bool:
    """One attempt: True when it got a 2xx (recorded in ``load``), False on a connection-level failure."""
    headers, body = _request(chunk, n)
    started = time.monotonic()
    try:
        response = await client.post(url + "/", headers=headers, content=body)
    except httpx.TransportError as exc:
        load.connection_failures[exc.__class__.__name__] += 1
        return False
    if response.status_code != 200:
        load.bad_answers.append(f"HTTP {response.status_code}: {response.text[:300]}")
        raise AssertionError(load.bad_answers[-1])
    seqs = response.json()["seqs"]
    load.answers.append(Answer([(e.source, e.id) for e in chunk], seqs, started, time.monotonic()))
    return True


async def _deliver_everything(url: str, chunks: list[list[CloudEvent]], load: Load, deadline: float) -> None:
    """Post every chunk, retrying one that failed at the connection level until it is acknowledged."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(20.0)) as client:
        for n, chunk in enumerate(chunks):
            while not await _post(client, url, chunk, n, load):
                assert time.monotonic() < deadline, "the audit service did not come back"
                await asyncio.sleep(0.1)  # the service is down: do not crowd out its restart


async def _until(condition: Callable[[], bool], deadline: float, what: str) -> None:
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.002)


async def _with_load(workers: list[Coroutine[Any, Any, None]], controller: Coroutine[Any, Any, None]) -> None:
    """Run the clients and the controller together; the first failure cancels the rest."""
    async with asyncio.TaskGroup() as group:
        for worker in [*workers, controller]:
            group.create_task(worker)


def _stored(url: str) -> dict[tuple[str, str], int]:
    """(source, id) -> seq of every stored event, read from the database itself."""
    engine = db.create(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(events_table.c.source, events_table.c.id, events_table.c.seq)).all()
    finally:
        engine.dispose()
    assert len(rows) == len({(row.source, row.id) for row in rows}), "an event is stored twice"
    return {(row.source, row.id): row.seq for row in rows}


def _verify(url: str, tmp_path: Path, count: int) -> None:
    done = run_cli("verify", "--db", url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"OK: {count} records")


def test_kill_9_mid_stream_loses_nothing_acknowledged_and_stores_nothing_twice(db_url: str, tmp_path: Path) -> None:
    run = tmp_path.name
    plan = [_chunks(worker, PER_WORKER, run) for worker in range(WORKERS)]
    sent = {(e.source, e.id) for chunks in plan for chunk in chunks for e in chunk}
    service = AuditService(db_url, cwd=tmp_path)
    load = Load()
    acknowledged_before_the_kill: list[int] = []
    restarts: list[AuditService] = []

    async def kill_and_restart(deadline: float) -> None:
        await _until(lambda: load.acknowledged() >= len(sent) // 3, deadline, "a third of the events to be stored")
        await asyncio.to_thread(service.kill)
        acknowledged_before_the_kill.append(load.acknowledged())
        restarts.append(await asyncio.to_thread(AuditService, db_url, cwd=tmp_path, port=service.port))

    async def main() -> None:
        deadline = time.monotonic() + 60
        workers = [_deliver_everything(service.url, chunks, load, deadline) for chunks in plan]
        await _with_load(workers, kill_and_restart(deadline))

    try:
        asyncio.run(main())
        [restarted] = restarts
        assert acknowledged_before_the_kill[0] < len(sent), "the kill came after the load, not in the middle of it"
        assert sum(load.connection_failures.values()) > 0, "no request noticed the kill"
        assert load.acknowledged() >= len(sent)
        logged = [(item["event"]["source"], item["event"]["id"], item["seq"]) for item in items(restarted.url)]
        assert restarted.stop() == 0, restarted.output()
    finally:
        for process in (service, *restarts):
            process.kill()  # only what is still running
    assert len(logged) == len(sent), "the log holds more or fewer events than were sent"
    assert {(source, id_) for source, id_, _ in logged} == sent
    assert [seq for _, _, seq in logged] == list(range(1, len(sent) + 1))
    in_log = {(source, id_): seq for source, id_, seq in logged}
    acknowledged = load.acknowledged_seqs()
    assert {key: in_log.get(key) for key in acknowledged} == acknowledged, "a 2xx event is missing or moved"
    _verify(db_url, tmp_path, len(sent))


def test_sigterm_finishes_requests_in_flight_and_exits_0(db_url: str, tmp_path: Path) -> None:
    run = tmp_path.name
    service = AuditService(db_url, "--commit-window-ms", "20", cwd=tmp_path)
    load = Load()
    signalled: list[float] = []

    async def post_until_refused(worker: int, deadline: float) -> None:
        chunks = _chunks(worker, 5000, run)
        async with httpx.AsyncClient(timeout=httpx.Timeout(40.0)) as client:
            for n, chunk in enumerate(chunks):
                if not await _post(client, service.url, chunk, n, load):
                    return
                assert time.monotonic() < deadline, "the audit service kept taking requests after SIGTERM"

    async def terminate(deadline: float) -> None:
        await _until(lambda: load.acknowledged() >= 400, deadline, "400 events to be stored")
        signalled.append(time.monotonic())
        service.proc.send_signal(signal.SIGTERM)

    async def main() -> None:
        deadline = time.monotonic() + 40
        await _with_load([post_until_refused(w, deadline) for w in range(WORKERS)], terminate(deadline))

    try:
        asyncio.run(main())
        code = service.wait(30)
    finally:
        service.kill()
    assert code == 0, service.output()
    assert load.bad_answers == []
    assert set(load.connection_failures) <= {"ConnectError", "RemoteProtocolError", "ReadError", "WriteError"}
    finished_after_the_signal = [a for a in load.answers if a.started < signalled[0] < a.ended]
    assert finished_after_the_signal, "no request was in flight when SIGTERM came"
    stored = _stored(db_url)
    acknowledged = load.acknowledged_seqs()
    assert {key: stored.get(key) for key in acknowledged} == acknowledged, "a 2xx event is missing or moved"
    assert all(key[0].startswith(f"/e2e/{run}/") for key in stored)
    _verify(db_url, tmp_path, len(stored))
