"""The Kafka protocol binding (CloudEvents kafka-protocol-binding.md 1.0.2), both directions.

A record is ``(key, headers, value)``. Binary content mode (§3.2) puts attributes in
``ce_`` headers (UTF-8) and ``datacontenttype`` in ``content-type``; structured mode
(§3.3) puts the JSON event format in the value with ``content-type:
application/cloudevents+json``. The key is the ``partitionkey`` extension (§3.1,
the partitioning extension), and decoding puts the key back into ``partitionkey``.
An event without data is written as a record with a null value, a tombstone.

Like sdk-go, decoding picks the mode from the headers: a ``content-type`` of
``application/cloudevents…`` is structured, a ``ce_specversion`` header binary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, NamedTuple

from eventaudit.events import types
from eventaudit.events._accel import speedups as _speedups
from eventaudit.events.bindings._data import content_type as _content_type
from eventaudit.events.bindings._data import data_bytes, parse_data
from eventaudit.events.errors import CloudEventError, EventTooLargeError, Failure, UnsupportedFormatError
from eventaudit.events.event import EMPTY_EXTENSIONS, CloudEvent, Extensions
from eventaudit.events.formats import json as json_format

PREFIX: Final = "ce_"
PARTITION_KEY: Final = "partitionkey"
_BINDING = "bindings/kafka-protocol-binding.md"

RecordHeaders = Iterable[tuple[str | bytes, bytes | str | None]]
"""Record headers as the clients give them: ``(name, value)`` pairs."""


class KafkaRecord(NamedTuple):
    """The parts of a Kafka record the binding fills: key, headers, value (``None`` = tombstone)."""

    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes | None


def encode_binary(event: CloudEvent) -> KafkaRecord:
    """``event`` in binary content mode (§3.2); no data gives a null value (tombstone)."""
    headers: list[tuple[str, bytes]] = []
    content_type = _content_type(event)
    if content_type is not None:
        headers.append(("content-type", content_type.encode()))
    for name, value in event.attributes().items():
        if name != "datacontenttype":
            headers.append((PREFIX + name, types.canonical_string(value).encode("utf-8", "surrogatepass")))
    return KafkaRecord(_key(event), headers, data_bytes(event))


def encode_structured(event: CloudEvent) -> KafkaRecord:
    """``event`` in structured content mode (§3.3) with the JSON event format."""
    return KafkaRecord(_key(event), [("content-type", json_format.CONTENT_TYPE.encode())], json_format.encode(event))


def _key(event: CloudEvent) -> bytes | None:
    key = event.extensions.get(PARTITION_KEY)
    return None if key is None else types.canonical_string(key).encode("utf-8", "surrogatepass")


def decode(
    key: bytes | str | None,
    headers: RecordHeaders | None,
    value: bytes | None,
    *,
    max_size: int | None = None,
) -> CloudEvent:
    """Decode a record in binary or structured mode; the key becomes ``partitionkey``.

    Raises:
        EventTooLargeError: the value is longer than ``max_size`` bytes.
        UnsupportedFormatError: neither a CloudEvents content type nor a ``ce_specversion`` header.
        CloudEventError: the record is not a valid CloudEvent.
    """
    if max_size is not None and value is not None and len(value) > max_size:
        raise EventTooLargeError(
            [Failure(None, f"the value is {len(value)} bytes, over the limit of {max_size}", "spec.md#size-limits")]
        )
    attributes, failures = _read_headers(headers or ())
    partition_key = _key_text(key)
    content_type = attributes.pop("content-type", None)
    if content_type is not None and content_type[:23].lower() == "application/cloudevents":
        return _decode_structured(content_type, value, partition_key)
    if not attributes and not failures:
        raise UnsupportedFormatError(
            [
                Failure(
                    None,
                    "not a CloudEvent: no ce_specversion header and no application/cloudevents content-type",
                    f"{_BINDING}#3-kafka-message-mapping",
                )
            ]
        )
    if failures:
        raise CloudEventError(failures)
    if partition_key is not None:
        attributes.setdefault(PARTITION_KEY, partition_key)
    return _decode_binary(attributes, content_type, value)


def _read_headers(headers: RecordHeaders) -> tuple[dict[str, str], list[Failure]]:
    plain = None if _speedups is None else _speedups.kafka_attributes(headers)
    if plain is not None:  # the C accelerator read the headers as the loop below would; None: not sure
        return plain, []
    attributes: dict[str, str] = {}
    failures: list[Failure] = []
    for raw_name, raw_value in headers:
        name = (raw_name.decode("utf-8", "replace") if isinstance(raw_name, bytes) else raw_name).lower()
        if name == "content-type":
            attribute = name
        elif name.startswith(PREFIX):
            attribute = name[3:]
        else:
            continue
        try:
            text = raw_value.decode("utf-8") if isinstance(raw_value, bytes) else (raw_value or "")
        except UnicodeDecodeError:
            failures.append(
                Failure(attribute, f"header {name!r} is not valid UTF-8", f"{_BINDING}#3232-metadata-headers")
            )
            continue
        if attribute in attributes and attributes[attribute] != text:
            failures.append(
                Failure(attribute, f"header {name!r} appears more than once", f"{_BINDING}#3232-metadata-headers")
            )
            continue
        attributes[attribute] = text
    return attributes, failures


def _decode_structured(content_type: str, value: bytes | None, partition_key: str | None) -> CloudEvent:
    media = types.parse_media_type(content_type)
    if media is None or media.essence != json_format.CONTENT_TYPE:
        raise UnsupportedFormatError(
            [
                Failure(
                    None,
                    f"unsupported event format {content_type!r}; use {json_format.CONTENT_TYPE}",
                    f"{_BINDING}#33-structured-content-mode",
                )
            ]
        )
    if value is None:
        raise CloudEventError(
            [Failure(None, "a structured record needs a value", f"{_BINDING}#33-structured-content-mode")]
        )
    if _speedups is not None and (event := _speedups.json_event(value, PARTITION_KEY, partition_key)) is not None:
        return event  # the plain case in C, as below; None: not sure
    obj = json_format.loads(value)
    if partition_key is not None and type(obj) is dict and obj.get(PARTITION_KEY) is None:
        obj[PARTITION_KEY] = partition_key
    return json_format.from_dict(obj)


def _decode_binary(attributes: dict[str, Any], content_type: str | None, value: bytes | None) -> CloudEvent:
    # The JavaScript SDK writes datacontenttype twice: content-type and ce_datacontenttype.
    declared = attributes.pop("datacontenttype", None)
    if declared is not None and content_type is not None and declared != content_type:
        raise CloudEventError(
            [
                Failure(
                    "datacontenttype", "ce_datacontenttype disagrees with content-type", f"{_BINDING}#321-content-type"
                )
            ]
        )
    content_type = content_type if content_type is not None else declared
    data = parse_data(value, content_type, f"{_BINDING}#322-event-data-encoding")
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


def _key_text(key: bytes | str | None) -> str | None:
    if key is None or isinstance(key, str):
        return key
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        raise CloudEventError(
            [Failure(PARTITION_KEY, "the record key is not valid UTF-8", "extensions/partitioning.md")]
        ) from None
