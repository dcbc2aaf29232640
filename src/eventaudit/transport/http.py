"""Sending CloudEvents over HTTP (httpx), in binary, structured or batched content mode."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Literal

import httpx

from eventaudit.events import CloudEvent
from eventaudit.events.bindings import http as http_binding
from eventaudit.transport.outcome import Delivered, Outcome, Rejected, RetryLater

Mode = Literal["binary", "structured", "batch"]
_RETRYABLE = frozenset({408, 425, 429})
_PROBLEM_MAX = 64 * 1024


class HTTPSender:
    """POSTs events to ``url``; one request per event, or one per call in batch mode.

    ``token`` is sent as ``Authorization: Bearer``. Connection errors, timeouts, 5xx,
    408, 425 and 429 are :class:`RetryLater` (with ``Retry-After`` when given); any
    other 4xx (and a 3xx, which is not followed) is :class:`Rejected`; 2xx is :class:`Delivered`.
    A ``client`` given by the caller stays the caller's: :meth:`close` leaves it open.

    Raises:
        ValueError: ``url`` is not an absolute ``http://`` or ``https://`` URL.
    """

    def __init__(
        self,
        url: str,
        *,
        mode: Mode = "binary",
        token: str | None = None,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        check_url(url)
        self.url = url
        self.mode = mode
        self._headers = dict(headers or {})
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def send(self, events: Sequence[CloudEvent]) -> Outcome:
        """Deliver ``events`` and say how it went; never raises for a delivery problem.

        In batch mode all events go in one request, so they are delivered all or none. In
        binary and structured mode they go one request each, in order, and sending stops at
        the first one not delivered: its outcome is returned, and the events before it were
        delivered (sending them again is safe where the receiver deduplicates, as the audit
        service does on ``(source, id)``).
        """
        if not events:
            return Delivered("nothing to send")
        if self.mode == "batch":
            return await self._post(*http_binding.encode_batch(events))
        encode = http_binding.encode_binary if self.mode == "binary" else http_binding.encode_structured
        outcome: Outcome = Delivered()
        for event in events:
            outcome = await self._post(*encode(event))
            if not isinstance(outcome, Delivered):
                return outcome
        return outcome

    async def _post(self, headers: dict[str, str], body: bytes) -> Outcome:
        try:
            response = await self._client.post(self.url, headers={**self._headers, **headers}, content=body)
        except httpx.HTTPError as exc:
            return RetryLater(f"{exc.__class__.__name__}: {exc}")
        return outcome_of(response.status_code, response.headers, response.text)

    async def close(self) -> None:
        """Close the connections, unless the client was the caller's."""
        if self._owns_client:
            await self._client.aclose()


def check_url(url: str) -> None:
    """Raise ``ValueError`` unless ``url`` is an absolute ``http://`` or ``https://`` URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise ValueError(f"not a URL: {url!r} ({exc})") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")


def outcome_of(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    """The outcome an HTTP answer means for the events it was about."""
    if 200 <= status < 300:
        return Delivered(f"HTTP {status}")
    reason = f"HTTP {status}: {_summary(body)}"
    if status >= 500 or status in _RETRYABLE:
        return RetryLater(reason, retry_after(headers.get("retry-after")))
    return Rejected(reason, status)


def _summary(body: str) -> str:
    """The ``detail`` of an RFC 9457 problem document, else the start of the body."""
    if body.startswith("{") and len(body) <= _PROBLEM_MAX:
        try:
            problem = json.loads(body)
        except (ValueError, RecursionError):  # whatever the receiver sent, the send still ends in an outcome
            problem = None
        if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
            return str(problem["detail"])[:500]
    return body[:500]


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date), ``None`` if unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # RFC 9110 §10.2.3: delta-seconds = 1*DIGIT (ASCII digits only)
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 §5.6.7: an HTTP-date is always GMT, even in asctime form
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - time.time())
