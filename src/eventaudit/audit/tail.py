"""``eventaudit tail``: follow the audit log's live stream and print each event."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any, TextIO

import httpx

_RECONNECT_SECONDS = 1.0


async def follow(
    url: str, token: str | None, params: Mapping[str, str], *, as_json: bool = False, out: TextIO = sys.stdout
) -> int:
    """Print events from ``url``'s live stream until interrupted; reconnects where it left off.

    Returns 1 when the service refuses the token or the parameters, 0 when interrupted.
    """
    headers = {"accept": "text/event-stream"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    last_id: str | None = None
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client:
        while True:
            if last_id is not None:
                headers["last-event-id"] = last_id
            try:
                async with client.stream(
                    "GET", url.rstrip("/") + "/v1/events/stream", params=dict(params), headers=headers
                ) as response:
                    if 400 <= response.status_code < 500:
                        body = (await response.aread()).decode(errors="replace")
                        print(f"eventaudit tail: HTTP {response.status_code}: {_detail(body)}", file=sys.stderr)
                        return 1
                    response.raise_for_status()
                    async for event_id, data in _events(response.aiter_lines()):
                        last_id = event_id or last_id
                        out.write(data + "\n" if as_json else readable(json.loads(data)))
                        out.flush()
            except (httpx.HTTPError, OSError) as exc:
                print(f"eventaudit tail: {exc.__class__.__name__}; reconnecting", file=sys.stderr)
            await asyncio.sleep(_RECONNECT_SECONDS)


async def _events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, str]]:
    event_id: str | None = None
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield event_id, "\n".join(data)
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))


def readable(item: Mapping[str, Any]) -> str:
    """An item the way the original write-up's audit service printed events (sdk-go's format)."""
    event = dict(item["event"])
    lines = [f"seq {item['seq']} recorded {item['recordedtime']}", "Context Attributes,"]
    for name in ("specversion", "type", "source", "subject", "id", "time", "dataschema", "datacontenttype"):
        if name in event:
            lines.append(f"  {name}: {event.pop(name)}")
    data = event.pop("data", None)
    data_base64 = event.pop("data_base64", None)
    if event:
        lines.append("Extensions,")
        lines.extend(f"  {name}: {value}" for name, value in sorted(event.items()))
    if data is not None or data_base64 is not None:
        lines.append("Data,")
        text = json.dumps(data, indent=2, ensure_ascii=False) if data is not None else f"(base64) {data_base64}"
        lines.extend("  " + line for line in text.splitlines())
    return "\n".join(lines) + "\n\n"


def _detail(body: str) -> str:
    try:
        return str(json.loads(body).get("detail", body))
    except (ValueError, AttributeError):
        return body[:300]
