"""The HTTP protocol binding (CloudEvents http-protocol-binding.md 1.0.2), both directions.

Encoding returns ``(headers, body)``; header names are lower case. Decoding takes
the request headers (a mapping, or pairs so repeated headers can be seen) and the
body, and chooses the content mode from ``Content-Type`` as the binding says (§3):
``application/cloudevents+json`` is structured (§3.2), ``application/cloudevents-batch+json``
batched (§3.3), any other ``application/cloudevents…`` an event format we do not
read, and anything else binary mode (§3.1), where the ``ce-`` headers carry the
attributes and the body is the data.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple
from urllib.parse import quote

from eventaudit.events import types
from eventaudit.events._accel import speedups as _speedups
from eventaudit.events.bindings._data import content_type as _content_type
from eventaudit.events.bindings._data import data_bytes, parse_data
from eventaudit.events.errors import CloudEventError, EventTooLargeError, Failure, UnsupportedFormatError
from eventaudit.events.event import EMPTY_EXTENSIONS, CloudEvent, Extensions
from eventaudit.events.formats import json as json_format

PREFIX: Final = "ce-"
_PREFIXES: Final = frozenset({"ce-", "Ce-", "cE-", "CE-"})
_BINDING = "bindings/http-protocol-binding.md"
_VALUES = f"{_BINDING}#3132-http-header-values"
_NAMES = f"{_BINDING}#3131-http-header-names"

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
"""Request headers: a mapping, or ``(name, value)`` pairs (names in any case)."""


class Mode(enum.Enum):
    """The HTTP content modes (§3)."""

    BINARY = "binary"
    STRUCTURED = "structured"
    BATCH = "batch"


# The members as module constants: on Python 3.11 every ``Mode.X`` goes through ``EnumType.__getattr__``
# (~0.15 µs), and a request's decode looks two of them up.
_BINARY, _STRUCTURED, _BATCH = Mode.BINARY, Mode.STRUCTURED, Mode.BATCH


class Decoded(NamedTuple):
    """What a request carried: its content mode and its events (one, unless batched)."""

    mode: Mode
    events: list[CloudEvent]


def encode_binary(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """``event`` in binary content mode (§3.1): attributes as percent-encoded ``ce-`` headers."""
    headers: dict[str, str] = {}
    content_type = _content_type(event)
    if content_type is not None:
        headers["content-type"] = content_type
    for name, value in event.attributes().items():
        if name != "datacontenttype":
            headers[PREFIX + name] = encode_header_value(types.canonical_string(value))
    return headers, data_bytes(event) or b""


def encode_structured(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """``event`` in structured content mode (§3.2) with the JSON event format."""
    return {"content-type": json_format.CONTENT_TYPE}, json_format.encode(event)


def encode_batch(events: Iterable[CloudEvent]) -> tuple[dict[str, str], bytes]:
    """``events`` in batched content mode (§3.3) with the JSON batch format."""
    return {"content-type": json_format.BATCH_CONTENT_TYPE}, json_format.encode_batch(events)


def decode(headers: Headers, body: bytes, *, max_size: int | None = None) -> Decoded:
    """Decode a request in whichever content mode its ``Content-Type`` says.

    Raises:
        EventTooLargeError: the body is longer than ``max_size`` bytes.
        UnsupportedFormatError: a CloudEvents format other than JSON, or no sign of a CloudEvent.
        CloudEventError: the message is not a valid CloudEvent (or batch of them).
    """
    if max_size is not None and len(body) > max_size:
        raise EventTooLargeError(
            [Failure(None, f"the body is {len(body)} bytes, over the limit of {max_size}", "spec.md#size-limits")]
        )
    if type(headers) is list:  # as servers hand them over (http.text_headers): read, never changed, here
        pairs: Iterable[tuple[str, str]] = headers
    else:
        pairs = headers.items() if type(headers) is dict or isinstance(headers, Mapping) else list(headers)
    content_type = _find_header(pairs, "content-type")
    mode = mode_of(content_type)
    if mode is _STRUCTURED:
        return _new_decoded(Decoded, (mode, [json_format.decode(body)]))
    if mode is _BATCH:
        return _new_decoded(Decoded, (mode, json_format.decode_batch(body)))
    return _new_decoded(Decoded, (mode, [_decode_binary(pairs, content_type, body)]))


_new_decoded = tuple.__new__  # Decoded(...) without the Python frame of the NamedTuple constructor


def decode_event(headers: Headers, body: bytes, *, max_size: int | None = None) -> CloudEvent:
    """Decode a request that carries one event, in binary or structured mode.

    Raises:
        UnsupportedFormatError: a batch, another event format, or no sign of a CloudEvent.
        CloudEventError: as for :func:`decode`.
    """
    decoded = decode(headers, body, max_size=max_size)
    if decoded.mode is Mode.BATCH:
        raise UnsupportedFormatError(
            [Failure(None, "expected one event, got a batch", f"{_BINDING}#33-batched-content-mode")]
        )
    return decoded.events[0]


def text_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """Header fields as an HTTP server hands them over, ``(name, value)`` bytes, as the str pairs
    :func:`decode` takes: each byte becomes the code point of its number (ISO-8859-1), so none is
    lost or refused here (RFC 9110 §5.5: field values are octets; the binding then checks them).
    """
    if _speedups is not None and (pairs := _speedups.latin1_pairs(raw)) is not None:
        return pairs  # the same list, built in C (_accel.py)
    return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]


def mode_of(content_type: str | None) -> Mode:
    """The content mode a ``Content-Type`` header value selects (§3).

    Raises:
        UnsupportedFormatError: an ``application/cloudevents`` type in a format other than JSON.
    """
    if content_type is None:
        return _BINARY
    mode = _modes.get(content_type)
    if mode is None:
        mode = _modes[content_type] = _mode_of(content_type)
        if len(_modes) > 1024:
            _modes.clear()
    return mode


_modes: dict[str, Mode] = {}


def _mode_of(content_type: str) -> Mode:
    head = content_type[:34].lower()
    if not head.startswith("application/cloudevents"):
        return Mode.BINARY
    media = types.parse_media_type(content_type)
    essence = media.essence if media is not None else head
    if essence == json_format.CONTENT_TYPE:
        return Mode.STRUCTURED
    if essence == json_format.BATCH_CONTENT_TYPE:
        return Mode.BATCH
    raise UnsupportedFormatError(
        [
            Failure(
                None,
                f"unsupported event format {content_type!r}; use {json_format.CONTENT_TYPE}",
                f"{_BINDING}#32-structured-content-mode",
            )
        ]
    )


def _find(pairs: Iterable[tuple[str, str]], wanted: str) -> str | None:
    for name, value in pairs:
        if name == wanted or name.lower() == wanted:
            return value
    return None


# The C accelerator, when built, runs the same search (_accel.py).
_find_header: Callable[[Iterable[tuple[str, str]], str], str | None] = (
    _find if _speedups is None else _speedups.find_header
)


def _decode_binary(pairs: Iterable[tuple[str, str]], content_type: str | None, body: bytes) -> CloudEvent:
    plain = None if _speedups is None else _speedups.http_attributes(pairs)
    if plain is not None:  # the C accelerator read plain ce- headers as the loop below would; None: not sure
        return _event_from_strings(
            plain, content_type, parse_data(body, content_type, f"{_BINDING}#312-event-data-encoding")
        )
    attributes: dict[str, str] = {}
    failures: list[Failure] = []
    for raw_name, raw_value in pairs:
        if raw_name[:3] not in _PREFIXES:
            continue
        attribute = raw_name[3:].lower()
        if attribute in attributes:
            failures.append(Failure(attribute, f"header {raw_name!r} appears more than once", _NAMES))
            continue
        if raw_value.isascii() and raw_value.isprintable() and "%" not in raw_value and raw_value[:1] != '"':
            attributes[attribute] = raw_value
            continue
        try:
            attributes[attribute] = decode_header_value(raw_value)
        except CloudEventError as exc:
            failures.extend(f._replace(attribute=attribute) for f in exc.failures)
    if not attributes and not failures:
        raise UnsupportedFormatError(
            [
                Failure(
                    None,
                    f"not a CloudEvent: no ce- headers, and Content-Type {content_type!r} is not a CloudEvents format",
                    f"{_BINDING}#3-http-message-mapping",
                )
            ]
        )
    if "datacontenttype" in attributes:
        failures.append(
            Failure("datacontenttype", "travels in Content-Type, not a ce- header", f"{_BINDING}#311-http-content-type")
        )
    if failures:
        raise CloudEventError(failures)
    data = parse_data(body, content_type, f"{_BINDING}#312-event-data-encoding")
    return _event_from_strings(attributes, content_type, data)


def _event_from_strings(attributes: dict[str, Any], content_type: str | None, data: object) -> CloudEvent:
    if _speedups is not None:  # the same construction in C (_accel.py)
        return _speedups.event_from_attributes(attributes, content_type, data)
    pop = attributes.pop
    return CloudEvent(
        specversion=pop("specversion", None),
        id=pop("id", None),
        source=pop("source", None),
        type=pop("type", None),
        datacontenttype=content_type,
        dataschema=pop("dataschema", None),
        subject=pop("subject", None),
        time=pop("time", None),
        extensions=Extensions(attributes) if attributes else EMPTY_EXTENSIONS,
        data=data,
    )


# §3.1.3.2: space, double quote, percent and anything outside U+0021-U+007E are encoded.
_SAFE: Final = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def encode_header_value(value: str) -> str:
    """Percent-encode ``value`` for an HTTP header, as §3.1.3.2 requires (UTF-8 octets)."""
    if value.isascii() and value.isprintable() and " " not in value and '"' not in value and "%" not in value:
        return value
    return quote(value, safe=_SAFE, errors="surrogatepass")


def decode_header_value(value: str) -> str:
    """Decode an HTTP header value per §3.1.3.2: unquote, percent-decode once, read UTF-8.

    A value a server handed over as Latin-1 text with bytes above 0x7F is read as
    the UTF-8 it was sent as.

    Raises:
        CloudEventError: a bad percent escape, invalid UTF-8, or characters a header cannot hold.
    """
    value = value.strip(" \t")
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _unquote_rfc7230(value[1:-1])
    if value.isascii():
        if "%" not in value:
            if not value.isprintable():
                raise CloudEventError([Failure(None, "header value holds control characters", _VALUES)])
            return value
        raw = value.encode("ascii")
    else:
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            raw = value.encode("utf-8", "surrogatepass")
    if b"\r" in raw or b"\n" in raw or b"\0" in raw:
        raise CloudEventError([Failure(None, "header value holds CR, LF or NUL", _VALUES)])
    try:
        return _percent_decode(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise CloudEventError([Failure(None, "percent-decoded header value is not valid UTF-8", _VALUES)]) from None


_HEX: Final = frozenset(b"0123456789abcdefABCDEF")


def _percent_decode(raw: bytes) -> bytes:
    if b"%" not in raw:
        return raw
    parts = raw.split(b"%")
    out = bytearray(parts[0])
    for part in parts[1:]:
        if len(part) < 2 or part[0] not in _HEX or part[1] not in _HEX:
            raise CloudEventError([Failure(None, "'%' must be followed by two hex digits", _VALUES)])
        out.append(int(part[:2], 16))
        out += part[2:]
    return bytes(out)


def _unquote_rfc7230(inner: str) -> str:
    out: list[str] = []
    escaped = False
    for char in inner:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            raise CloudEventError([Failure(None, "unescaped '\"' inside a quoted header value", _VALUES)])
        else:
            out.append(char)
    return "".join(out)
