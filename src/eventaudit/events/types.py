"""The CloudEvents type system (spec.md#type-system) as fast predicates.

Each predicate answers for one canonical string encoding. Values that many events
share (sources, types, content types) are remembered in small bounded caches, so a
busy producer's repeated attributes cost a dictionary lookup.
"""

from __future__ import annotations

import binascii
import calendar
import ipaddress
import re
from typing import NamedTuple

from eventaudit.events._accel import speedups as _speedups

INT_MIN = -(2**31)
INT_MAX = 2**31 - 1

_CACHE_LIMIT = 4096

# spec.md#type-system, String: no C0/C1 controls, no noncharacters, no lone surrogates.
_FORBIDDEN_CHARS = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef\ufffe\uffff"
    + "".join(f"{chr(p * 0x10000 + 0xFFFE)}{chr(p * 0x10000 + 0xFFFF)}" for p in range(1, 17))
    + "]"
)


def is_string(value: str) -> bool:
    """Whether ``value`` holds only characters the String type allows (spec.md#type-system)."""
    if value.isascii():
        # For ASCII, printable means: no U+0000-U+001F and no U+007F.
        return value.isprintable()
    return _FORBIDDEN_CHARS.search(value) is None


# RFC 3339 §5.6 date-time, seconds required, offset Z or +hh:mm / -hh:mm.
# RFC 3339 digits are ASCII only: [0-9], since a regex digit class matches any Unicode digit.
_DATE_TIME = re.compile(
    r"([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]"
    r"(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
)
_FRACTION_AND_OFFSET = re.compile(r"(?:\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_good_seconds: set[str] = set()


def is_timestamp(value: str) -> bool:
    """Whether ``value`` is an RFC 3339 timestamp with seconds and a valid offset.

    Events of the same second share their first 19 characters; once that part is
    known good, only the fraction and offset are left to check.
    """
    head = value[:19]
    if head not in _good_seconds:
        match = _DATE_TIME.fullmatch(head)
        if match is None:
            return False
        day = int(match[3])
        if day > 28 and day > calendar.monthrange(int(match[1]), int(match[2]))[1]:
            return False
        if head.endswith("60"):  # a leap second: never cached, the offset decides
            return _FRACTION_AND_OFFSET.fullmatch(value, 19) is not None and _is_leap_second(value)
        if len(_good_seconds) >= _CACHE_LIMIT:
            _good_seconds.clear()
        _good_seconds.add(head)
    return _FRACTION_AND_OFFSET.fullmatch(value, 19) is not None


def _is_leap_second(value: str) -> bool:
    """RFC 3339 §5.7: second 60 only at 23:59:60 UTC (given in any offset)."""
    minutes = int(value[11:13]) * 60 + int(value[14:16])
    if value[-1] not in "Zz":
        sign = 1 if value[-6] == "+" else -1
        minutes -= sign * (int(value[-5:-3]) * 60 + int(value[-2:]))
    return minutes % (24 * 60) == 23 * 60 + 59


# RFC 3986 §4.1 URI-reference = URI (§3: scheme ":" hier-part) / relative-ref (§4.2).
# After a scheme, "//" always starts an authority; without one, the first segment of a
# rootless path may not contain ":" (segment-nz-nc). "[" and "]" appear only around an
# IP-literal host (§3.2.2, checked by _ip_literal_ok).
_PCHAR = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
_PCHAR_NC = r"(?:[A-Za-z0-9\-._~!$&'()*+,;=@]|%[0-9A-Fa-f]{2})"
_HOST = r"(?:\[[^\]\[/?#@]*\]|(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*)"
_USERINFO = r"(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*@)?"
_AUTHORITY = rf"//{_USERINFO}{_HOST}(?::[0-9]*)?"
_ABSOLUTE_PATH = rf"/(?:{_PCHAR}+(?:/{_PCHAR}*)*)?"
_HIER_PART = rf"(?:{_AUTHORITY}(?:/{_PCHAR}*)*|{_ABSOLUTE_PATH}|{_PCHAR}+(?:/{_PCHAR}*)*)?"
_RELATIVE_PART = rf"(?:{_AUTHORITY}(?:/{_PCHAR}*)*|{_ABSOLUTE_PATH}|{_PCHAR_NC}+(?:/{_PCHAR}*)*)?"
_QUERY = rf"(?:\?(?:{_PCHAR}|[/?])*)?"
_FRAGMENT = rf"(?:\#(?:{_PCHAR}|[/?])*)?"
_SCHEME = r"[A-Za-z][A-Za-z0-9+.\-]*:"
_URI_REFERENCE = re.compile(rf"(?:{_SCHEME}{_HIER_PART}|{_RELATIVE_PART}){_QUERY}{_FRAGMENT}")
_ABSOLUTE_URI = re.compile(rf"{_SCHEME}{_HIER_PART}{_QUERY}")

_uri_reference_cache: dict[str, bool] = {}
_uri_cache: dict[str, bool] = {}


def _remember(cache: dict[str, bool], value: str, verdict: bool) -> bool:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[value] = verdict
    return verdict


def is_uri_reference(value: str) -> bool:
    """Whether ``value`` is a URI-reference per RFC 3986 §4.1 (spec.md#type-system)."""
    verdict = _uri_reference_cache.get(value)
    if verdict is not None:
        return verdict
    ok = _URI_REFERENCE.fullmatch(value) is not None
    if ok and "[" in value:
        ok = _ip_literal_ok(value)
    return _remember(_uri_reference_cache, value, ok)


def is_uri(value: str) -> bool:
    """Whether ``value`` is an absolute URI per RFC 3986 §4.3 (no fragment)."""
    verdict = _uri_cache.get(value)
    if verdict is not None:
        return verdict
    ok = _ABSOLUTE_URI.fullmatch(value) is not None and ("[" not in value or _ip_literal_ok(value))
    return _remember(_uri_cache, value, ok)


_IP_LITERAL = re.compile(r"//(?:[^/?#@]*@)?\[([^\]]*)\]")
_IP_FUTURE = re.compile(r"[vV][0-9A-Fa-f]+\.[A-Za-z0-9\-._~!$&'()*+,;=:]+")


def _ip_literal_ok(value: str) -> bool:
    """RFC 3986 §3.2.2: ``[`` IPv6address / IPvFuture ``]``, only as the host of an authority."""
    match = _IP_LITERAL.search(value)
    if match is None or value.count("[") != 1:
        return False
    literal = match[1]
    if literal[:1] in ("v", "V"):
        return _IP_FUTURE.fullmatch(literal) is not None
    if "%" in literal:  # zone identifiers are RFC 6874, not RFC 3986
        return False
    try:
        ipaddress.IPv6Address(literal)
    except ValueError:
        return False
    return True


# RFC 2046 §5.1 / RFC 9110 §8.3.1: type "/" subtype *( OWS ";" OWS parameter ).
_TCHARS = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e]|\\[\t\x20-\x7e])*"'  # ASCII only (RFC 2045 §5.1)
_MEDIA_TYPE = re.compile(rf"({_TCHARS})/({_TCHARS})((?:[ \t]*;[ \t]*{_TCHARS}=(?:{_TCHARS}|{_QUOTED}))*)[ \t]*")
_QUOTED_PAIR = re.compile(r"\\(.)")  # RFC 9110 §5.6.4: a recipient treats \x as x
_PARAM = re.compile(rf"[ \t]*;[ \t]*({_TCHARS})=({_TCHARS}|{_QUOTED})")


class MediaType(NamedTuple):
    """A parsed media type: what the codecs need to know about a ``datacontenttype``."""

    essence: str
    """``type/subtype`` in lower case."""
    charset: str | None
    """The ``charset`` parameter in lower case, unquoted, if any."""
    is_json: bool
    """``application/json``, ``text/json`` or any ``+json`` suffix (JSON format §3.1)."""
    is_text: bool
    """Data of this type is text that a JSON ``data`` string can carry."""


_media_cache: dict[str, MediaType | None] = {}
_TEXT_SUBTYPES = frozenset({"xml", "javascript", "ecmascript", "x-www-form-urlencoded", "yaml"})


def parse_media_type(value: str) -> MediaType | None:
    """Parse ``value`` as an RFC 2046 media type; ``None`` when it is not one."""
    try:
        return _media_cache[value]
    except KeyError:
        pass
    parsed = _parse_media_type(value)
    if len(_media_cache) >= _CACHE_LIMIT:
        _media_cache.clear()
    _media_cache[value] = parsed
    return parsed


def _parse_media_type(value: str) -> MediaType | None:
    match = _MEDIA_TYPE.fullmatch(value)
    if match is None:
        return None
    main, sub = match[1].lower(), match[2].lower()
    charset = None
    for name, raw in _PARAM.findall(match[3]):
        if name.lower() == "charset":
            charset = _QUOTED_PAIR.sub(r"\1", raw[1:-1]).lower() if raw.startswith('"') else raw.lower()
    essence = f"{main}/{sub}"
    is_json = (sub == "json" and main in ("application", "text")) or sub.endswith("+json")
    is_text = is_json or main == "text" or sub in _TEXT_SUBTYPES or sub.endswith("+xml") or sub.endswith("+yaml")
    if charset not in (None, "utf-8", "us-ascii"):
        is_text = False
    return MediaType(essence, charset, is_json, is_text)


def is_media_type(value: str) -> bool:
    """Whether ``value`` is a media type per RFC 2046 (spec.md#datacontenttype)."""
    return parse_media_type(value) is not None


_EXTENSION_NAME = re.compile(r"[a-z0-9]+")


def is_attribute_name(name: str) -> bool:
    """Whether ``name`` is a valid attribute name: ``[a-z0-9]+`` (spec.md#naming-conventions)."""
    return _EXTENSION_NAME.fullmatch(name) is not None


def canonical_string(value: str | int | bool | bytes) -> str:
    """The canonical string encoding of an attribute value (spec.md#type-system)."""
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is bytes:
        return binascii.b2a_base64(value, newline=False).decode()
    return str(value)


def timestamp_micros(value: str) -> int:
    """Microseconds since 1970-01-01T00:00:00Z of a valid RFC 3339 timestamp, for any year 0000-9999.

    Integer arithmetic (days from the civil date), so years ``datetime`` cannot hold
    still order correctly; a leap second counts as the last microsecond of its minute.
    Fractions beyond microseconds are cut off.
    """
    if _speedups is not None and (micros := _speedups.timestamp_micros(value)) is not None:
        return micros  # in C; None: not sure (a leap second, say), computed here
    head = value[:19]  # events of the same second share it: its seconds are computed once
    seconds = _seconds_of.get(head)
    if seconds is None:
        seconds = _local_seconds(head)
        if len(_seconds_of) >= _CACHE_LIMIT:
            _seconds_of.clear()
        _seconds_of[head] = seconds
    micros = 0
    if value[19] == ".":
        digits = value[20:].rstrip("Zz").partition("+")[0].partition("-")[0]
        micros = int((digits + "000000")[:6])
    if value[17:19] == "60":  # the leap second: its seconds are those of :59
        micros = 999_999
    if value[-1] not in "Zz":
        sign = 1 if value[-6] == "+" else -1
        seconds -= sign * (int(value[-5:-3]) * 3600 + int(value[-2:]) * 60)
    return seconds * 1_000_000 + micros


_seconds_of: dict[str, int] = {}


def _local_seconds(head: str) -> int:
    """Seconds since 1970-01-01T00:00:00 of ``YYYY-MM-DDTHH:MM:SS`` as written (no offset); :60 counts as :59."""
    year, month, day = int(head[0:4]), int(head[5:7]), int(head[8:10])
    hour, minute, second = int(head[11:13]), int(head[14:16]), min(int(head[17:19]), 59)
    return _days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468
