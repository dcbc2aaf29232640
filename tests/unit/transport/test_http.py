"""HTTPSender against a real HTTP server on a loopback port: outcomes, Retry-After, content modes."""

from __future__ import annotations

import asyncio
import email.utils
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from eventaudit.events import CloudEvent
from eventaudit.transport import Delivered, Outcome, Rejected, RetryLater, Sender
from eventaudit.transport.http import HTTPSender, retry_after
from tests.integration.servers import free_port, serve_in_thread


@dataclass(frozen=True)
class Seen:
    """One request as it arrived at the server."""

    path: str
    headers: dict[str, str]
    body: bytes


class Receiver:
    """A tiny app that answers the status in the path (or the next scripted one) and records each request.

    ``POST /{status}?retry_after=VALUE`` answers ``status`` with ``Retry-After: VALUE``; ``POST /script``
    answers the next status of :attr:`script`; ``POST /problem`` a 422 problem document; ``POST /slow``
    never answers in time.
    """

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: list[int] = []
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/script", self._scripted, methods=["POST"]),
                Route("/slow", self._slow, methods=["POST"]),
                Route("/problem", self._problem, methods=["POST"]),
                Route("/nested", self._nested, methods=["POST"]),
                Route("/{status:int}", self._answer, methods=["POST"]),
            ]
        )

    async def _record(self, request: Request) -> None:
        seen = Seen(request.url.path, dict(request.headers), await request.body())
        with self._lock:
            self.seen.append(seen)

    async def _answer(self, request: Request) -> Response:
        await self._record(request)
        headers = {}
        if "retry_after" in request.query_params:
            headers["retry-after"] = request.query_params["retry_after"]
        status = request.path_params["status"]
        return Response(b"" if status == 204 else f"answer {status}".encode(), status_code=status, headers=headers)

    async def _scripted(self, request: Request) -> Response:
        await self._record(request)
        with self._lock:
            status = self.script.pop(0)
        return Response(f"scripted {status}", status_code=status)

    async def _problem(self, request: Request) -> Response:
        await self._record(request)
        problem = {
            "type": "about:blank",
            "title": "Unprocessable",
            "status": 422,
            "detail": "id: must be a non-empty string",
        }
        return Response(msgspec.json.encode(problem), status_code=422, media_type="application/problem+json")

    async def _nested(self, request: Request) -> Response:
        await self._record(request)
        body = '{"d":' * 5_000 + "1" + "}" * 5_000  # 30 KB, nested deeper than Python's recursion limit
        return Response(body, status_code=400, media_type="application/problem+json")

    async def _slow(self, request: Request) -> Response:
        await self._record(request)
        await asyncio.sleep(1.5)
        return Response("too late")

    def reset(self) -> None:
        with self._lock:
            self.seen.clear()
            self.script.clear()


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Receiver]]:
    receiver = Receiver()
    with serve_in_thread(receiver.app) as url:
        yield url, receiver


@pytest.fixture
def receiver(server: tuple[str, Receiver]) -> Receiver:
    server[1].reset()
    return server[1]


@pytest.fixture
def base_url(server: tuple[str, Receiver]) -> str:
    return server[0]


def event(n: int = 1, **attributes: Any) -> CloudEvent:
    fields: dict[str, Any] = {"type": "test.sent", "source": "/tests/transport", "id": f"event-{n}", "data": {"n": n}}
    fields.update(attributes)
    return CloudEvent.create(**fields)


def deliver(url: str, events: Sequence[CloudEvent], **options: Any) -> Outcome:
    async def run() -> Outcome:
        sender: Sender = HTTPSender(url, **options)
        try:
            return await sender.send(events)
        finally:
            await sender.close()

    return asyncio.run(run())


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(base_url: str, receiver: Receiver, status: int) -> None:
    outcome = deliver(f"{base_url}/{status}", [event()])
    assert outcome == Delivered(f"HTTP {status}")
    assert len(receiver.seen) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 425, 429])
def test_5xx_408_425_429_are_worth_retrying(base_url: str, receiver: Receiver, status: int) -> None:
    outcome = deliver(f"{base_url}/{status}", [event()])
    assert isinstance(outcome, RetryLater)
    assert outcome.reason == f"HTTP {status}: answer {status}"
    assert outcome.after is None


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 413, 415, 422])
def test_other_4xx_are_rejected_for_good(base_url: str, receiver: Receiver, status: int) -> None:
    outcome = deliver(f"{base_url}/{status}?retry_after=5", [event()])
    assert isinstance(outcome, Rejected)
    assert outcome.status == status
    assert outcome.reason == f"HTTP {status}: answer {status}"


def _http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("status", "header", "low", "high"),
    [
        (503, "120", 120.0, 120.0),
        (429, "0", 0.0, 0.0),
        (429, "HTTP-date +90", 85.0, 91.0),
        (503, "HTTP-date -90", 0.0, 0.0),
    ],
)
def test_retry_later_honours_retry_after(
    base_url: str, receiver: Receiver, status: int, header: str, low: float, high: float
) -> None:
    if header.startswith("HTTP-date"):
        header = _http_date(float(header.split()[1]))
    outcome = deliver(f"{base_url}/{status}?{urlencode({'retry_after': header})}", [event()])
    assert isinstance(outcome, RetryLater)
    assert outcome.after is not None
    assert low <= outcome.after <= high


@pytest.mark.parametrize("header", ["soon", "1.5", "-3", "\u00b2", "Sun, 32 Foo 1994 08:49:37 GMT"])
def test_an_unreadable_retry_after_is_no_delay_at_all(base_url: str, receiver: Receiver, header: str) -> None:
    outcome = deliver(f"{base_url}/503?{urlencode({'retry_after': header})}", [event()])
    assert isinstance(outcome, RetryLater)
    assert outcome.after is None


_FAR = datetime(2094, 11, 6, 8, 49, 37, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "when"),
    [
        ("Sat, 06 Nov 2094 08:49:37 GMT", _FAR),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)),  # RFC 850: the past
        ("Sat Nov  6 08:49:37 2094", _FAR),  # asctime carries no zone: it is GMT (RFC 9110 §5.6.7)
    ],
)
def test_retry_after_reads_every_http_date_form_as_gmt(
    value: str, when: datetime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # a local zone far from GMT must not shift the answer
    time.tzset()
    try:
        seconds = retry_after(value)
    finally:
        monkeypatch.undo()
        time.tzset()
    assert seconds is not None
    assert seconds == pytest.approx(max(0.0, when.timestamp() - time.time()), abs=5)


def test_connection_refused_is_retry_later() -> None:
    outcome = deliver(f"http://127.0.0.1:{free_port()}/", [event()])
    assert isinstance(outcome, RetryLater)
    assert outcome.reason.startswith("ConnectError")
    assert outcome.after is None


def test_a_timeout_is_retry_later(base_url: str, receiver: Receiver) -> None:
    outcome = deliver(f"{base_url}/slow", [event()], timeout=0.2)
    assert isinstance(outcome, RetryLater)
    assert outcome.reason.startswith("ReadTimeout")


def test_binary_mode_puts_attributes_in_headers_and_data_in_the_body(base_url: str, receiver: Receiver) -> None:
    sent = event(7, subject="user 7", extensions={"partitionkey": "7", "traceparent": "00-abc-def-01"})
    assert deliver(f"{base_url}/202", [sent], mode="binary") == Delivered("HTTP 202")
    [request] = receiver.seen
    assert request.headers["content-type"] == "application/json"
    assert request.headers["ce-specversion"] == "1.0"
    assert request.headers["ce-id"] == "event-7"
    assert request.headers["ce-source"] == "/tests/transport"
    assert request.headers["ce-type"] == "test.sent"
    assert request.headers["ce-subject"] == "user%207"
    assert request.headers["ce-partitionkey"] == "7"
    assert request.headers["ce-traceparent"] == "00-abc-def-01"
    assert "ce-datacontenttype" not in request.headers
    assert msgspec.json.decode(request.body) == {"n": 7}


def test_binary_mode_adds_no_content_type_the_event_does_not_have(base_url: str, receiver: Receiver) -> None:
    assert isinstance(deliver(f"{base_url}/200", [event(data=None)], mode="binary"), Delivered)
    [request] = receiver.seen
    assert "content-type" not in request.headers
    assert request.body == b""


def test_structured_mode_sends_the_json_event_format(base_url: str, receiver: Receiver) -> None:
    assert isinstance(deliver(f"{base_url}/200", [event(3)], mode="structured"), Delivered)
    [request] = receiver.seen
    assert request.headers["content-type"] == "application/cloudevents+json"
    assert not any(name.startswith("ce-") for name in request.headers)
    body = msgspec.json.decode(request.body)
    assert body["id"] == "event-3"
    assert body["data"] == {"n": 3}
    assert body["specversion"] == "1.0"


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_per_event_modes_send_one_request_per_event_in_order(base_url: str, receiver: Receiver, mode: str) -> None:
    assert isinstance(deliver(f"{base_url}/200", [event(n) for n in range(1, 6)], mode=mode), Delivered)
    assert len(receiver.seen) == 5
    ids = [r.headers.get("ce-id") or msgspec.json.decode(r.body)["id"] for r in receiver.seen]
    assert ids == [f"event-{n}" for n in range(1, 6)]


def test_batch_mode_sends_every_event_in_one_request(base_url: str, receiver: Receiver) -> None:
    assert isinstance(deliver(f"{base_url}/200", [event(n) for n in range(1, 4)], mode="batch"), Delivered)
    [request] = receiver.seen
    assert request.headers["content-type"] == "application/cloudevents-batch+json"
    batch = msgspec.json.decode(request.body)
    assert [e["id"] for e in batch] == ["event-1", "event-2", "event-3"]
    assert [e["data"] for e in batch] == [{"n": 1}, {"n": 2}, {"n": 3}]


@pytest.mark.parametrize(
    ("script", "expected", "requests"),
    [
        ([200, 400, 200], Rejected, 2),
        ([200, 200, 503], RetryLater, 3),
        ([200, 200, 200], Delivered, 3),
    ],
)
def test_per_event_modes_stop_at_the_first_event_not_delivered(
    base_url: str, receiver: Receiver, script: list[int], expected: type, requests: int
) -> None:
    receiver.script.extend(script)
    outcome = deliver(f"{base_url}/script", [event(n) for n in range(3)], mode="binary")
    assert isinstance(outcome, expected)
    assert len(receiver.seen) == requests


def test_nothing_to_send_is_delivered_without_a_request(base_url: str, receiver: Receiver) -> None:
    assert isinstance(deliver(f"{base_url}/500", []), Delivered)
    assert receiver.seen == []


def test_the_token_and_extra_headers_go_on_every_request(base_url: str, receiver: Receiver) -> None:
    token = "s3cret-token-0123456789"
    outcome = deliver(f"{base_url}/200", [event(1), event(2)], token=token, headers={"x-request-id": "abc"})
    assert isinstance(outcome, Delivered)
    assert [r.headers["authorization"] for r in receiver.seen] == [f"Bearer {token}"] * 2
    assert [r.headers["x-request-id"] for r in receiver.seen] == ["abc"] * 2


def test_a_client_given_by_the_caller_stays_the_callers(base_url: str, receiver: Receiver) -> None:
    async def run() -> bool:
        async with httpx.AsyncClient() as client:
            sender = HTTPSender(f"{base_url}/200", client=client)
            assert isinstance(await sender.send([event()]), Delivered)
            await sender.close()
            return client.is_closed

    assert asyncio.run(run()) is False


def test_a_problem_document_gives_its_detail_as_the_reason(base_url: str, receiver: Receiver) -> None:
    outcome = deliver(f"{base_url}/problem", [event()])
    assert outcome == Rejected("HTTP 422: id: must be a non-empty string", 422)


def test_a_hostile_answer_still_ends_in_an_outcome(base_url: str, receiver: Receiver) -> None:
    outcome = deliver(f"{base_url}/nested", [event()])
    assert isinstance(outcome, Rejected)
    assert outcome.status == 400
    assert outcome.reason.startswith('HTTP 400: {"d":{"d":')
    assert len(outcome.reason) < 600
