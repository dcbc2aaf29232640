"""The CloudEvent: an immutable value, valid by construction (CloudEvents 1.0.2).

Two ways in:

* :meth:`CloudEvent.create` is for producers. It fills ``id`` (a fresh UUID),
  ``time`` (now, UTC) and ``specversion``, picks a ``datacontenttype`` for the data
  when none is given, then validates.
* ``CloudEvent(...)`` with keyword arguments is the strict path the decoders use.
  It invents nothing: every attribute is taken as given and checked against every
  rule of the core spec. A broken rule raises :class:`CloudEventError` naming the
  attribute, the rule and the spec section, for every failure at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final, NoReturn, TypeGuard

import msgspec

from eventaudit.events import types
from eventaudit.events._accel import speedups as _speedups
from eventaudit.events.errors import CloudEventError, Failure

SPECVERSION: Final = "1.0"

#: Names of the context attributes of the core spec (spec.md#context-attributes).
CORE_ATTRIBUTES: Final = frozenset(
    {"specversion", "id", "source", "type", "datacontenttype", "dataschema", "subject", "time"}
)
#: Names no extension may take: core attributes and the JSON format's data members.
RESERVED_NAMES: Final = CORE_ATTRIBUTES | {"data", "data_base64"}

ExtensionValue = str | int | bool | bytes
"""String, Integer, Boolean or Binary. URI, URI-reference and Timestamp travel as strings."""


class Extensions(dict[str, ExtensionValue]):
    """The extension attributes of an event: a dictionary that refuses changes.

    Decoders build one from a dictionary nobody else holds; the event keeps it as is.
    Any other mapping given to :class:`CloudEvent` is copied into one.
    """

    __slots__ = ()

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("CloudEvent extensions are read-only; build a new event instead")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[type[Extensions], tuple[dict[str, ExtensionValue]]]:
        return (Extensions, (dict(self),))


EMPTY_EXTENSIONS: Final[Mapping[str, ExtensionValue]] = Extensions()
_LONG_NAME = 20
_log = logging.getLogger(__name__)
# With the C accelerator, __post_init__ runs in C for the common case and calls the Python one for the rest.
_post_init_hook: Callable[[Callable[[CloudEvent], None]], Callable[[CloudEvent], None]] = (
    (lambda post_init: post_init) if _speedups is None else _speedups.post_init_for
)
_warned_names: set[str] = set()


class CloudEvent(msgspec.Struct, frozen=True, kw_only=True, repr_omit_defaults=True):
    """One CloudEvent: context attributes, extensions and data.

    ``data`` is ``None`` (no data), ``bytes`` (Binary data), ``str`` (text) or a
    decoded JSON value when ``datacontenttype`` is JSON (or absent, JSON format §3.1).
    Treat a JSON value you get from ``data`` as read-only.
    ``time`` is kept as its RFC 3339 string exactly as received; see :meth:`timestamp`.

    The field types say what a valid event holds; the constructor accepts anything
    and checks it, so a decoder can hand over values straight from the wire.
    ``extensions`` is copied into a read-only :class:`Extensions` unless it is one.

    Raises:
        CloudEventError: on any broken rule of the core spec.
    """

    # None defaults: a missing required attribute is a CloudEventError naming it, not a TypeError.
    specversion: str = None  # type: ignore[assignment]
    id: str = None  # type: ignore[assignment]
    source: str = None  # type: ignore[assignment]
    type: str = None  # type: ignore[assignment]
    datacontenttype: str | None = None
    dataschema: str | None = None
    subject: str | None = None
    time: str | None = None
    extensions: Mapping[str, ExtensionValue] = EMPTY_EXTENSIONS
    data: Any = None

    @_post_init_hook
    def __post_init__(self) -> None:
        if not _fast_looks_valid(self):
            failures = _check(self)
            if failures:
                raise CloudEventError(failures)
        if type(self.extensions) is not Extensions:
            msgspec.structs.force_setattr(self, "extensions", Extensions(self.extensions))

    @classmethod
    def create(
        cls,
        *,
        type: str,
        source: str,
        data: Any = None,
        id: str | None = None,
        time: datetime | str | None = None,
        subject: str | None = None,
        datacontenttype: str | None = None,
        dataschema: str | None = None,
        extensions: Mapping[str, ExtensionValue | datetime] | None = None,
    ) -> CloudEvent:
        """Build a new event for a producer, filling what a producer may leave out.

        ``id`` defaults to a random UUID, ``time`` to now in UTC. Without a
        ``datacontenttype``, bytes data is ``application/octet-stream``, a ``str`` is
        ``text/plain; charset=utf-8`` and anything else ``application/json``.
        ``datetime`` values (``time``, extensions) must be timezone-aware.

        Raises:
            CloudEventError: when the result breaks a rule of the spec.
        """
        if datacontenttype is None and data is not None:
            datacontenttype = _default_content_type(data)
        return cls(
            specversion=SPECVERSION,
            id=str(uuid.uuid4()) if id is None else id,
            source=source,
            type=type,
            datacontenttype=datacontenttype,
            dataschema=dataschema,
            subject=subject,
            time=format_time(datetime.now(UTC) if time is None else time),
            extensions={k: format_time(v) if isinstance(v, datetime) else v for k, v in (extensions or {}).items()},
            data=data,
        )

    def timestamp(self) -> datetime | None:
        """``time`` as an aware :class:`datetime` (microsecond precision), or ``None``."""
        if self.time is None:
            return None
        text = str(self.time)
        head, dot, rest = text.partition(".")
        if dot:  # datetime takes at most 6 fractional digits
            digits = len(rest) - len(rest.lstrip("0123456789"))
            text = f"{head}.{rest[: min(digits, 6)]}{rest[digits:]}"
        text = text.replace("z", "Z").replace("t", "T")
        if text[17:19] == "60":  # RFC 3339 §5.7 leap second: datetime stops at :59.999999
            return datetime.fromisoformat(f"{text[:17]}59.999999{text[19:].lstrip('.0123456789')}")
        return datetime.fromisoformat(text)

    def attributes(self) -> dict[str, ExtensionValue]:
        """Every context attribute that is set, core and extension, by name."""
        attrs: dict[str, ExtensionValue] = {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        for name in ("datacontenttype", "dataschema", "subject", "time"):
            value = getattr(self, name)
            if value is not None:
                attrs[name] = value
        attrs.update(self.extensions)
        return attrs

    def media_type(self) -> types.MediaType | None:
        """The parsed ``datacontenttype``, or ``None`` when it is absent."""
        return None if self.datacontenttype is None else types.parse_media_type(self.datacontenttype)


def format_time(value: datetime | str) -> str:
    """An RFC 3339 string for ``value``; UTC is written with ``Z``."""
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise CloudEventError([Failure("time", "must be timezone-aware", "spec.md#time")])
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _default_content_type(data: Any) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        return "application/octet-stream"
    if isinstance(data, str):
        return "text/plain; charset=utf-8"
    return "application/json"


# Values already found valid, by rule. Producers repeat their sources, types and
# content types, so most events cost a set lookup for these; the sets are bounded.
_good_sources: set[str] = set()
_good_strings: set[str] = set()
_good_media: set[str] = set()
_good_uris: set[str] = set()
_good_names: set[str] = set()
_GOOD_LIMIT = 4096


def _remember(good: set[str], value: str) -> None:
    if len(good) >= _GOOD_LIMIT:
        good.clear()
    good.add(value)


def _plain(value: object) -> TypeGuard[str]:
    """A non-empty printable-ASCII String: the common case, decided in C."""
    return type(value) is str and value != "" and value.isascii() and value.isprintable()


def _looks_valid(ev: CloudEvent) -> bool:
    """The fast path: ``True`` only when ``ev`` is certainly valid.

    ``False`` sends the event to :func:`_check`, which finds every failure (or none:
    the fast path gives up on anything unusual, such as non-ASCII text). Plain
    printable ASCII is tested inline (``isascii`` and ``isprintable`` run in C).
    """
    value: object = ev.id
    if ev.specversion != SPECVERSION or type(value) is not str or not (value.isascii() and value.isprintable()):
        return False
    if not value:
        return False
    value = ev.source
    if type(value) is not str or type(ev.type) is not str:
        return False
    if value not in _good_sources:
        if not (_plain(value) and types.is_uri_reference(value)):
            return False
        _remember(_good_sources, value)
    value = ev.type
    if value not in _good_strings:
        if not _plain(value):
            return False
        _remember(_good_strings, value)
    value = ev.datacontenttype
    if value is not None and (type(value) is not str or value not in _good_media):
        if not (_plain(value) and types.is_media_type(value)):
            return False
        _remember(_good_media, value)
    value = ev.dataschema
    if value is not None and (type(value) is not str or value not in _good_uris):
        if not (_plain(value) and types.is_uri(value)):
            return False
        _remember(_good_uris, value)
    value = ev.subject
    if value is not None and (type(value) is not str or not value or not (value.isascii() and value.isprintable())):
        return False
    value = ev.time
    if value is not None and (type(value) is not str or not types.is_timestamp(value)):
        return False
    if ev.extensions and not _extensions_look_valid(ev.extensions):
        return False
    data = ev.data
    return data is None or type(data) in _DATA_TYPES


_DATA_TYPES: Final = frozenset({bytes, str, dict, list, int, float, bool})


def _extensions_look_valid(extensions: Mapping[str, object]) -> bool:
    if type(extensions) not in (Extensions, dict, MappingProxyType):
        return False
    for name, value in extensions.items():
        if name not in _good_names:
            if not (type(name) is str and len(name) <= _LONG_NAME and types.is_attribute_name(name)):
                return False
            if name in RESERVED_NAMES:
                return False
            _remember(_good_names, name)
        kind = type(value)
        if kind is str:
            if not (value.isascii() and value.isprintable()):  # type: ignore[attr-defined]
                return False
        elif kind is int:
            if not types.INT_MIN <= value <= types.INT_MAX:  # type: ignore[operator]
                return False
        elif kind is not bool and kind is not bytes:
            return False
    return True


_REQUIRED = ("id", "source", "type")
_Add = Callable[[Failure], None]
_T = "spec.md#type-system"


def _check(ev: CloudEvent) -> list[Failure]:
    """Every failure of ``ev`` against the core spec; empty when it is valid."""
    failures: list[Failure] = []
    add = failures.append
    if ev.specversion != SPECVERSION:
        if ev.specversion is None:
            add(Failure("specversion", "is required", "spec.md#specversion"))
        else:
            add(Failure("specversion", "must be exactly '1.0'", "spec.md#specversion"))
    for name in _REQUIRED:
        value = getattr(ev, name)
        if type(value) is str and value and types.is_string(value):
            continue
        if value is None:
            add(Failure(name, "is required", f"spec.md#{name}"))
        else:
            _check_string(name, value, f"spec.md#{name}", add)
    if type(ev.source) is str and ev.source and not types.is_uri_reference(ev.source):
        add(Failure("source", "must be a URI-reference (RFC 3986 §4.1)", "spec.md#source-1"))
    if ev.datacontenttype is not None:
        _check_datacontenttype(ev.datacontenttype, add)
    if (
        ev.dataschema is not None
        and _check_string("dataschema", ev.dataschema, _T, add)
        and not types.is_uri(ev.dataschema)
    ):
        add(Failure("dataschema", "must be an absolute URI (RFC 3986 §4.3)", "spec.md#dataschema"))
    if ev.subject is not None:
        _check_string("subject", ev.subject, "spec.md#subject", add)
    if ev.time is not None and _check_string("time", ev.time, _T, add) and not types.is_timestamp(ev.time):
        add(Failure("time", "must be an RFC 3339 timestamp with seconds and a valid offset", "spec.md#time"))
    if ev.extensions:
        _check_extensions(ev.extensions, add)
    if ev.data is not None:
        _check_data(ev.data, add)
    return failures


def _check_string(name: str, value: object, section: str, add: _Add) -> bool:
    if type(value) is not str:
        add(Failure(name, f"must be a String, not {_json_kind(value)}", section))
        return False
    if not value:
        add(Failure(name, "must be a non-empty String", section))
        return False
    if not types.is_string(value):
        add(Failure(name, "must not contain control characters, noncharacters or lone surrogates", _T))
        return False
    return True


def _check_datacontenttype(value: object, add: _Add) -> None:
    if _check_string("datacontenttype", value, "spec.md#datacontenttype", add) and not types.is_media_type(str(value)):
        add(Failure("datacontenttype", "must be a media type (RFC 2046)", "spec.md#datacontenttype"))


def _check_extensions(extensions: object, add: _Add) -> None:
    if not isinstance(extensions, Mapping):
        add(Failure("extensions", "must be a mapping of names to values", "spec.md#extension-context-attributes"))
        return
    for name, value in extensions.items():
        if type(name) is not str or not types.is_attribute_name(name):
            add(Failure(str(name), "extension names use only a-z and 0-9", "spec.md#naming-conventions"))
            continue
        if name in RESERVED_NAMES:
            add(Failure(name, "is reserved and cannot be an extension", "spec.md#extension-context-attributes"))
            continue
        if len(name) > _LONG_NAME:
            _warn_long_name(name)
        _check_extension_value(name, value, add)


def _check_extension_value(name: str, value: object, add: _Add) -> None:
    kind = type(value)
    if kind is str:
        if value:  # an empty String is a valid extension value
            _check_string(name, value, _T, add)
    elif kind is int:
        if not types.INT_MIN <= value <= types.INT_MAX:  # type: ignore[operator]
            add(Failure(name, "Integer out of the signed 32-bit range", _T))
    elif kind is not bool and kind is not bytes:
        add(Failure(name, f"must be String, Integer, Boolean or Binary, not {_json_kind(value)}", _T))


def _warn_long_name(name: str) -> None:
    if name not in _warned_names and len(_warned_names) < 1024:
        _warned_names.add(name)
        _log.warning("extension name %r is longer than 20 characters (spec.md#naming-conventions)", name)


def _check_data(data: object, add: _Add) -> None:
    if not isinstance(data, bytes | str | int | float | list | dict):
        add(Failure("data", f"must be bytes, str or a JSON value, not {type(data).__name__}", "spec.md#event-data"))


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a Boolean"
    if isinstance(value, int):
        return "an Integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return "a String"
    return type(value).__name__


# The C accelerator, when built, decides the common case and asks _looks_valid when not sure (_accel.py).
_fast_looks_valid: Callable[[CloudEvent], bool] = _looks_valid
if _speedups is not None:
    _speedups.configure(
        CloudEvent,
        _looks_valid,
        specversion=SPECVERSION,
        sources=_good_sources,
        media=_good_media,
        uris=_good_uris,
        reserved=RESERVED_NAMES,
        data_types=_DATA_TYPES,
        extensions_type=Extensions,
        long_name=_LONG_NAME,
        empty_extensions=EMPTY_EXTENSIONS,
    )
    _fast_looks_valid = _speedups.looks_valid
