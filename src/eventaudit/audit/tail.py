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
    url: str,
    token: str | None,
    params: Mapping[str, str],
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print events from ``url``'s live stream until cancelled; reconnects where it left off.

    Says on ``err`` (stderr) when it is following, so a reader knows that every event
    stored from then on will be printed. Returns 1 when the service refuses the token or
    the parameters (a 4xx). Errors writing to ``out`` (a closed pipe) are raised.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    stream_url = url.rstrip("/") + "/v1/events/stream"
    headers = {"accept": "text/event-stream"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    last_id: str | None = None
    connected_before = False
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None)) as client:
        while True:
            if last_id is not None:
                headers["last-event-id"] = last_id
            try:
                async with client.stream("GET", stream_url, params=dict(params), headers=headers) as response:
                    if 400 <= response.status_code < 500:
                        body = (await response.aread()).decode(errors="replace")
                        print(f"eventaudit tail: HTTP {response.status_code}: {_detail(body)}", file=err)
                        return 1
                    response.raise_for_status()
                    what = "reconnected to" if connected_before else "following"
                    print(f"eventaudit tail: {what} {stream_url} (Ctrl-C to stop)", file=err, flush=True)
                    connected_before = True
                    async for event_id, data in _events(response.aiter_lines()):
                        out.write(data + "\n" if as_json else readable(json.loads(data)))
                        out.flush()
                        last_id = event_id or last_id
            except httpx.HTTPError as exc:
                print(
                    f"eventaudit tail: {exc.__class__.__name__} from {stream_url}; reconnecting", file=err, flush=True
                )
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
    json_data = _is_json(event.get("datacontenttype"))
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
        if data_base64 is not None:
            text = f"(base64) {data_base64}"
        elif isinstance(data, str) and not json_data:
            text = data
        else:
            text = json.dumps(data, indent=2, ensure_ascii=False)
        lines.extend("  " + line for line in text.splitlines())
    return "\n".join(lines) + "\n\n"


def _is_json(content_type: object) -> bool:
    """Whether data of this ``datacontenttype`` is JSON (JSON event format §3.1: absent means JSON)."""
    if not isinstance(content_type, str):
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.endswith(("/json", "+json"))


def _detail(body: str) -> str:
    try:
        return str(json.loads(body).get("detail", body))
    except (ValueError, AttributeError):
        return body[:300]
