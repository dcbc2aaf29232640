"""One view of a CloudEvent for comparing ours with an SDK's, whatever their types.

A view maps every context attribute that is set to a comparable value, plus ``data``:

* ``time`` becomes an aware UTC :class:`datetime`, optionally cut to milliseconds
  (the JavaScript SDK keeps milliseconds; the conformance data compares instants).
* In binary content modes every extension travels as its canonical string
  (spec.md#type-system); ``as_strings=True`` turns the sender's typed values into those.
* In the JSON format a Binary extension value is a Base64 string (json-format.md#22).
  Extension values are tagged with their type, since ``True == 1`` in Python.
* ``data`` is tagged: ``("bytes", b)``, ``("str", s)``, ``("json", canonical JSON text)``
  or ``None``, so ``b"a"``, ``"a"``, ``1`` and ``True`` never compare equal by accident.

The helpers here are written from the spec, not from ``eventaudit``, so they can be an oracle.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from eventaudit.events import CloudEvent

CORE = frozenset({"specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time"})


def canonical(value: object) -> str:
    """The canonical string of a String, Integer, Boolean or Binary value (spec.md#type-system)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"not a CloudEvents attribute value: {value!r}")


def instant(value: datetime | str, *, milliseconds: bool = False) -> datetime:
    """An RFC 3339 timestamp (or aware datetime) as a UTC datetime, at most microsecond precision."""
    if isinstance(value, str):
        head, dot, rest = value.partition(".")
        if dot:  # datetime.fromisoformat takes at most 6 fractional digits
            digits = len(rest) - len(rest.lstrip("0123456789"))
            value = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
        value = datetime.fromisoformat(value.replace("z", "Z"))
    assert value.tzinfo is not None, f"time {value!r} has no offset"
    value = value.astimezone(UTC)
    if milliseconds:
        value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


def tag(data: object) -> tuple[str, Any] | None:
    """``data`` tagged with its kind; JSON values as canonical JSON text."""
    if data is None:
        return None
    if isinstance(data, bytes | bytearray):
        return ("bytes", bytes(data))
    if isinstance(data, str):
        return ("str", data)
    return ("json", json.dumps(data, sort_keys=True, ensure_ascii=False))


def view(
    attributes: Mapping[str, Any],
    data: object,
    *,
    as_strings: bool = False,
    milliseconds: bool = False,
) -> dict[str, Any]:
    """The comparable view of an event given as attributes (core and extensions) and data.

    ``as_strings``: extensions as canonical strings (binary content modes).
    Otherwise Binary extension values become Base64 strings (JSON event format).
    """
    out: dict[str, Any] = {}
    for name, value in attributes.items():
        if value is None:
            continue
        if name == "time":
            out[name] = instant(value, milliseconds=milliseconds)
        elif name in CORE:
            out[name] = value
        elif as_strings or isinstance(value, bytes):
            out[name] = ("str", canonical(value))
        else:  # the type too: True == 1 in Python, not in CloudEvents
            out[name] = (type(value).__name__, value)
    out["data"] = tag(data)
    return out


def view_of(event: CloudEvent, *, as_strings: bool = False, milliseconds: bool = False) -> dict[str, Any]:
    """The comparable view of one of our events."""
    return view(event.attributes(), event.data, as_strings=as_strings, milliseconds=milliseconds)
