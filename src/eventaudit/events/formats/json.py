"""The JSON event format and the JSON batch format (CloudEvents json-format.md 1.0.2).

``encode``/``decode`` handle one event (``application/cloudevents+json``),
``encode_batch``/``decode_batch`` a batch (``application/cloudevents-batch+json``,
json-format.md#4-json-batch-format). ``to_dict``/``from_dict`` work on the decoded
JSON object, for callers that embed events in larger documents.

Decoding is strict: malformed JSON, duplicate members, a ``data`` and a
``data_base64`` together, and every rule of the core spec raise
:class:`~eventaudit.events.errors.CloudEventError`; nothing else escapes.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec

from eventaudit.events._accel import speedups as _speedups
from eventaudit.events.errors import CloudEventError, EventTooLargeError, Failure
from eventaudit.events.event import EMPTY_EXTENSIONS, CloudEvent, Extensions

CONTENT_TYPE: Final = "application/cloudevents+json"
BATCH_CONTENT_TYPE: Final = "application/cloudevents-batch+json"

_OPTIONAL_STRING: Final[dict[str, Any]] = {"type": ["string", "null"]}  # null is absent (#22-type-system-mapping)

SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "description": "A CloudEvent in the JSON event format (CloudEvents 1.0, formats/json-format.md).",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"type": "string", "enum": ["1.0"]},
        "id": {"type": "string", "minLength": 1},
        "source": {"type": "string", "minLength": 1, "description": "A URI-reference"},
        "type": {"type": "string", "minLength": 1},
        "subject": _OPTIONAL_STRING,
        "time": {**_OPTIONAL_STRING, "format": "date-time"},
        "datacontenttype": _OPTIONAL_STRING,
        "dataschema": {**_OPTIONAL_STRING, "description": "An absolute URI"},
        "data": {},
        "data_base64": {**_OPTIONAL_STRING, "description": "Binary data in Base64, instead of data"},
    },
}
"""A JSON Schema of one event in this format, for API documents (OpenAPI). It says less than
:func:`decode` checks (a URI-reference, a Timestamp, the rules of extensions); :func:`decode` decides."""

_FORMAT = "formats/json-format.md"
_DATA = f"{_FORMAT}#31-handling-of-data"
_INF = float("inf")
_decoder = msgspec.json.Decoder(float_hook=lambda text: _float(text))
_plain_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")
_DECODE_ERRORS = (msgspec.MsgspecError, RecursionError, UnicodeDecodeError, ValueError)


def encode(event: CloudEvent) -> bytes:
    """``event`` in the JSON event format, UTF-8 encoded."""
    return _encoder.encode(to_dict(event))


def encode_sorted(event: CloudEvent) -> bytes:
    """``event`` as :func:`encode` writes it, but with the members of every object sorted by name.

    One byte sequence per event, whatever order its extensions and data members came in.
    """
    if _speedups is not None and (encoded := _speedups.sorted_json(event)) is not None:
        return encoded  # the common case in C; None: not sure, encoded here
    return _sorted_encoder.encode(to_dict(event))


def encode_batch(events: Iterable[CloudEvent]) -> bytes:
    """``events`` as one JSON batch (json-format.md#4-json-batch-format)."""
    return _encoder.encode([to_dict(event) for event in events])


def to_dict(event: CloudEvent) -> dict[str, Any]:
    """The JSON object of ``event`` (json-format.md#3-envelope).

    Binary data goes to ``data_base64``; text and JSON values go to ``data``. Binary
    extension values are written as Base64 strings (json-format.md#22-type-system-mapping).
    """
    obj: dict[str, Any] = {
        "specversion": event.specversion,
        "id": event.id,
        "source": event.source,
        "type": event.type,
    }
    if event.datacontenttype is not None:
        obj["datacontenttype"] = event.datacontenttype
    if event.dataschema is not None:
        obj["dataschema"] = event.dataschema
    if event.subject is not None:
        obj["subject"] = event.subject
    if event.time is not None:
        obj["time"] = event.time
    for name, value in event.extensions.items():
        obj[name] = binascii.b2a_base64(value, newline=False).decode() if type(value) is bytes else value
    data = event.data
    if data is not None:
        if type(data) is bytes:
            obj["data_base64"] = binascii.b2a_base64(data, newline=False).decode()
        else:
            obj["data"] = data
    return obj


def decode(body: bytes | str, *, max_size: int | None = None) -> CloudEvent:
    """Decode one event in the JSON event format.

    Raises:
        EventTooLargeError: ``body`` is longer than ``max_size`` bytes.
        CloudEventError: anything else that is not one valid CloudEvent.
    """
    if _speedups is not None and type(body) is bytes and (max_size is None or len(body) <= max_size):
        event = _speedups.json_event(body)  # the plain case in C; None: not sure, decoded again below
        if event is not None:
            return event
    obj = loads(body, max_size=max_size)
    return _from_own_dict(obj) if type(obj) is dict else from_dict(obj)


def decode_batch(body: bytes | str, *, max_size: int | None = None) -> list[CloudEvent]:
    """Decode a JSON batch; the failures of every member are reported, each with its index.

    Raises:
        EventTooLargeError: ``body`` is longer than ``max_size`` bytes.
        CloudEventError: the body is not a JSON array of valid CloudEvents.
    """
    items = loads(body, max_size=max_size)
    if type(items) is not list:
        raise CloudEventError(
            [Failure(None, "a batch must be a JSON array of CloudEvents", f"{_FORMAT}#4-json-batch-format")]
        )
    events: list[CloudEvent] = []
    failures: list[Failure] = []
    for index, item in enumerate(items):
        try:
            events.append(_from_own_dict(item) if type(item) is dict else from_dict(item))
        except CloudEventError as exc:
            failures.extend(f._replace(batch_index=index) for f in exc.failures)
    if failures:
        raise CloudEventError(failures)
    return events


def from_dict(obj: object) -> CloudEvent:
    """A CloudEvent from a decoded JSON object; ``null`` attributes count as absent.

    Raises:
        CloudEventError: ``obj`` is not an object, or not a valid CloudEvent.
    """
    if type(obj) is not dict:
        raise CloudEventError(
            [Failure(None, f"an event must be a JSON object, not {_kind(obj)}", f"{_FORMAT}#3-envelope")]
        )
    return _from_own_dict(dict(obj))  # the caller's object stays as it was


def _from_own_dict(obj: dict[str, Any]) -> CloudEvent:
    """:func:`from_dict` for an object nobody else holds: its members are taken out of it."""
    if _speedups is not None and (event := _speedups.event_from_dict(obj)) is not None:
        return event  # built in C as below (no data_base64, no null extension); None: not sure
    pop = obj.pop
    specversion = pop("specversion", None)
    id_ = pop("id", None)
    source = pop("source", None)
    type_ = pop("type", None)
    datacontenttype = pop("datacontenttype", None)
    dataschema = pop("dataschema", None)
    subject = pop("subject", None)
    time = pop("time", None)
    data = pop("data", None)
    if "data_base64" in obj:
        data = _data_base64(pop("data_base64"), data)
    extensions: Mapping[str, Any]
    if obj:  # what is left are extensions; null means absent
        if None in obj.values():
            obj = {name: value for name, value in obj.items() if value is not None}
        extensions = Extensions(obj)
    else:
        extensions = EMPTY_EXTENSIONS
    return CloudEvent(
        specversion=specversion,
        id=id_,
        source=source,
        type=type_,
        datacontenttype=datacontenttype,
        dataschema=dataschema,
        subject=subject,
        time=time,
        extensions=extensions,
        data=data,
    )


def _data_base64(encoded: object, data: object) -> object:
    if encoded is None:  # null means absent (json-format.md#22-type-system-mapping)
        return data
    if data is not None:
        _both_data()
    if type(encoded) is not str:
        raise CloudEventError([Failure("data_base64", "must be a Base64 String", _DATA)])
    try:
        return binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError):
        raise CloudEventError([Failure("data_base64", "is not valid Base64 (RFC 4648)", _DATA)]) from None


def _both_data() -> bytes:
    raise CloudEventError([Failure("data", "data and data_base64 are mutually exclusive", _DATA)])


def loads(body: bytes | str, *, max_size: int | None = None) -> Any:
    """Parse JSON text strictly (no repeated members), without reading it as an event.

    Raises:
        EventTooLargeError: ``body`` is longer than ``max_size`` bytes.
        CloudEventError: ``body`` is not well-formed JSON, or repeats a member.
    """
    if max_size is not None and len(body) > max_size:
        raise EventTooLargeError(
            [Failure(None, f"the message is {len(body)} bytes, over the limit of {max_size}", "spec.md#size-limits")]
        )
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    longer_number = False
    try:
        try:
            value = _decoder.decode(raw)
        except _LongerNumberError:
            longer_number = True
            value = _plain_decoder.decode(raw)
    except _DECODE_ERRORS as exc:
        raise CloudEventError([Failure(None, f"malformed JSON: {_reason(exc)}", "RFC 8259")]) from None
    if longer_number or not _unique(raw, value):
        _reject_repeated_members(raw)
    return value


class _LongerNumberError(Exception):
    """A number that re-encodes longer than written: the cheap duplicate-member proof does not hold."""


def _float(text: str) -> float:
    number = float(text)
    if number in (_INF, -_INF):
        raise ValueError("Number out of range")
    if len(_encoder.encode(number)) > len(text):  # 1e2 -> 100.0, 12345678901234567.0 -> 1.2345678901234568e16
        raise _LongerNumberError
    return number


def _surely_unique(raw: bytes, value: object) -> bool:
    """Cheap proof that no JSON object in ``raw`` repeats a member name.

    A repeated member is ambiguous (RFC 8259 §4) and would let two readers of the
    same bytes see different events, so it is refused. msgspec keeps the last of
    repeated members silently; re-encoding what it decoded gives the shortest JSON
    for the same values, so when that is as long as the input (whitespace aside)
    nothing was dropped. Strings and integers never re-encode longer than they were
    written; a float that would makes the decoder send the text down the exact path.
    """
    again = _encoder.encode(value)
    if len(again) == len(raw):
        return True
    return len(raw.translate(None, b" \n\r\t")) == len(again) - again.count(b" ")


def _reject_repeated_members(raw: bytes) -> None:
    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in members]
        if len(set(names)) != len(names):
            raise _RepeatedMemberError(sorted({n for n in names if names.count(n) > 1}))
        return dict(members)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except _RepeatedMemberError as exc:
        raise CloudEventError(
            [
                Failure(name, "appears more than once in one JSON object", "spec.md#context-attributes")
                for name in exc.names
            ]
        ) from None
    except (ValueError, RecursionError):
        pass  # msgspec accepted it; a stricter reader's quibble is not a repeated member


class _RepeatedMemberError(Exception):
    def __init__(self, names: list[str]) -> None:
        self.names = names


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return "not valid UTF-8"
    return str(exc)


def _kind(value: object) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null" if value is None else type(value).__name__
    )


# The C accelerator, when built, scans the text for repeated names instead of re-encoding (_accel.py).
_unique: Callable[[bytes, object], bool] = _surely_unique if _speedups is None else _speedups.surely_unique
if _speedups is not None:
    _speedups.configure_json(_decoder.decode)
    _speedups.configure_sorted_json(_sorted_encoder.encode)
