"""Sending CloudEvents over HTTP (httpx), in binary, structured or batched content mode."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping, Sequence
from typing import Literal

import httpx

from eventaudit.events import CloudEvent
from eventaudit.events.bindings import http as http_binding
from eventaudit.transport.outcome import Delivered, Outcome, Rejected, RetryLater

Mode = Literal["binary", "structured", "batch"]
_RETRYABLE = frozenset({408, 425, 429})


class HTTPSender:
    """POSTs events to ``url``; one request per event, or one per call in batch mode.

    ``token`` is sent as ``Authorization: Bearer``. Connection errors, timeouts, 5xx,
    408, 425 and 429 are :class:`RetryLater` (with ``Retry-After`` when given); any
    other 4xx is :class:`Rejected`; 2xx is :class:`Delivered`.
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
        self.url = url
        self.mode = mode
        self._headers = dict(headers or {})
        if token:
            self._headers["authorization"] = f"Bearer {token}"
        self._client = client or httpx.AsyncClient(timeout=timeout)

    async def send(self, events: Sequence[CloudEvent]) -> Outcome:
        """Deliver ``events``; in binary and structured mode they go one request each, in order."""
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
        await self._client.aclose()


def outcome_of(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    """The outcome an HTTP answer means for the events it was about."""
    if 200 <= status < 300:
        return Delivered(f"HTTP {status}")
    reason = f"HTTP {status}: {body[:500]}"
    if status >= 500 or status in _RETRYABLE:
        return RetryLater(reason, retry_after(headers.get("retry-after")))
    return Rejected(reason, status)


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
