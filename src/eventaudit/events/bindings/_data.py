"""Event data as message bytes and back, shared by the binary content modes."""

from __future__ import annotations

from typing import Any

import msgspec

from eventaudit.events import types
from eventaudit.events.errors import CloudEventError, Failure
from eventaudit.events.event import CloudEvent

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def data_bytes(event: CloudEvent) -> bytes | None:
    """The bytes of ``event.data`` for a binary-mode message body; ``None`` without data.

    Without a ``datacontenttype`` the data is a JSON value, as the JSON format implies
    (json-format.md#31-handling-of-data), and is written as JSON.
    """
    data = event.data
    if data is None:
        return None
    if type(data) is bytes:
        return data
    media = event.media_type()
    if type(data) is str and media is not None and not media.is_json:
        return data.encode("utf-8")
    return _encoder.encode(data)


def content_type(event: CloudEvent) -> str | None:
    """The content type a binary-mode message carries for ``event``.

    ``datacontenttype`` when set. Without it, data other than bytes is a JSON value (the
    JSON format implies ``application/json``), and spec.md#datacontenttype says a
    translation to a binding SHOULD set that implied type explicitly.
    """
    if event.datacontenttype is not None:
        return event.datacontenttype
    if event.data is not None and type(event.data) is not bytes:
        return "application/json"
    return None


def parse_data(body: bytes | None, content_type: str | None, section: str) -> Any:
    """``body`` as event data, read the way ``content_type`` says.

    JSON media types give the decoded JSON value (invalid JSON is an error); text
    in UTF-8 or US-ASCII gives a ``str``; anything else stays ``bytes``. An empty
    body is no data.

    Raises:
        CloudEventError: the content type says JSON and the body is not JSON.
    """
    if not body:
        return None
    media = types.parse_media_type(content_type) if content_type is not None else None
    if media is None:
        return bytes(body)
    if media.is_json:
        try:
            return _decoder.decode(body)
        except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError, ValueError):
            raise CloudEventError(
                [Failure("data", f"is not valid JSON, as datacontenttype {content_type!r} says it is", section)]
            ) from None
    if media.is_text:
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(body)
    return bytes(body)
