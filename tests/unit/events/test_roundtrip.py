"""Round trips of valid CloudEvents through every format and binding mode (hypothesis).

The strategy builds events with the strict constructor from values the spec allows: ids, subjects and types
from the whole String alphabet (spec.md#type-system), sources that are RFC 3986 §4.1 URI-references, RFC 3339
times with offsets and fractions, extensions of every type, and data as bytes, text or JSON values.

What each mode may change, and nothing else:

* JSON format (json-format.md#22-type-system-mapping): a Binary extension value travels as a Base64 String and
  comes back as that String; the reader cannot know it was Binary.
* binary modes (HTTP §3.1, Kafka §3.2): every attribute travels as its canonical string, so extension values come
  back as ``types.canonical_string(value)``; an event with JSON data and no ``datacontenttype`` comes back with
  ``application/json``, the type it implied (spec.md#datacontenttype: the target SHOULD set it explicitly); and the
  body is the data, so empty data (zero bytes) cannot be told from no data.
"""

from __future__ import annotations

import binascii
import calendar
import json
import re
import string
from typing import Any
from urllib.parse import unquote_to_bytes

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventaudit.events import CloudEvent, CloudEventError, types
from eventaudit.events.bindings import http, kafka
from eventaudit.events.event import RESERVED_NAMES
from eventaudit.events.formats import json as json_format

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FIELDS = (
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "extensions",
    "data",
)

# --------------------------------------------------------------------------------------------------------------------
# Strings: spec.md#type-system String, any Unicode except U+0000-U+001F, U+007F-U+009F, noncharacters, surrogates.
# --------------------------------------------------------------------------------------------------------------------


def _noncharacter(char: str) -> bool:
    code = ord(char)
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


_allowed_char = st.characters(exclude_categories=("Cs", "Cc")).filter(lambda c: not _noncharacter(c))
_tricky = st.sampled_from(
    ["%", '"', " ", "'", "%20", "%zz", "%%", "\\", "é", "ß", "中", "😀", "👩\u200d💻", "\u00a0", "\ufeff", "\U0010fffd"]
)
strings = st.lists(st.one_of(_tricky, _allowed_char), min_size=1, max_size=10).map("".join)
maybe_empty_strings = st.lists(st.one_of(_tricky, _allowed_char), max_size=10).map("".join)

# --------------------------------------------------------------------------------------------------------------------
# URI-references (RFC 3986 §4.1) and absolute URIs (§4.3), built from the grammar.
# --------------------------------------------------------------------------------------------------------------------

_UNRESERVED = string.ascii_letters + string.digits + "-._~"
_SUB_DELIMS = "!$&'()*+,;="
_pct = st.integers(0, 255).flatmap(lambda b: st.sampled_from([f"%{b:02X}", f"%{b:02x}"]))
_pchar = st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS + ":@"), _pct)
_pchar_nc = st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS + "@"), _pct)
_segment = st.lists(_pchar, max_size=5).map("".join)
_segment_nz = st.lists(_pchar, min_size=1, max_size=5).map("".join)
_segment_nz_nc = st.lists(_pchar_nc, min_size=1, max_size=5).map("".join)
_path_abempty = st.lists(_segment.map(lambda s: "/" + s), max_size=3).map("".join)
_path_absolute = st.one_of(st.just("/"), st.tuples(_segment_nz, _path_abempty).map(lambda t: "/" + "".join(t)))
_path_rootless = st.tuples(_segment_nz, _path_abempty).map("".join)
_path_noscheme = st.tuples(_segment_nz_nc, _path_abempty).map("".join)
_scheme = st.from_regex(r"[A-Za-z][A-Za-z0-9+.\-]{0,6}", fullmatch=True)
_reg_name = st.lists(st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS), _pct), max_size=8).map("".join)
_ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
IP_LITERALS = ["[::1]", "[::]", "[2001:db8::7]", "[1:2:3:4:5:6:7:8]", "[::ffff:1.2.3.4]", "[v1.x]", "[v7.a:b]"]
_ip_literal = st.sampled_from(IP_LITERALS)
_userinfo = st.lists(st.one_of(st.sampled_from(_UNRESERVED + _SUB_DELIMS + ":"), _pct), max_size=5).map("".join)
_port = st.from_regex(r"[0-9]{0,5}", fullmatch=True)
_authority = st.builds(
    lambda user, host, port: (f"{user}@" if user is not None else "") + host + (f":{port}" if port is not None else ""),
    st.none() | _userinfo,
    st.one_of(_reg_name, _ipv4, _ip_literal),
    st.none() | _port,
)
_query = st.lists(st.one_of(_pchar, st.sampled_from("/?")), max_size=6).map("".join)
_hier_part = st.one_of(
    st.tuples(_authority, _path_abempty).map(lambda t: "//" + "".join(t)),
    _path_absolute,
    _path_rootless,
    st.just(""),
)
_relative_part = st.one_of(
    st.tuples(_authority, _path_abempty).map(lambda t: "//" + "".join(t)),
    _path_absolute,
    _path_noscheme,
    st.just(""),
)


def _suffix(prefix: str, part: str | None) -> str:
    return "" if part is None else prefix + part


absolute_uris = st.builds(
    lambda scheme, hier, query: f"{scheme}:{hier}{_suffix('?', query)}", _scheme, _hier_part, st.none() | _query
)
uri_references = st.one_of(
    st.builds(lambda uri, fragment: uri + _suffix("#", fragment), absolute_uris, st.none() | _query),
    st.builds(
        lambda rel, query, fragment: rel + _suffix("?", query) + _suffix("#", fragment),
        _relative_part,
        st.none() | _query,
        st.none() | _query,
    ),
    st.sampled_from(
        [
            "https://github.com/cloudevents",
            "mailto:cncf-wg-serverless@lists.cncf.io",
            "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66",
            "/cloudevents/spec/pull/123",
            "/sensors/tn-1234567/alerts",
            "1-555-123-4567",
        ]
    ),
)
sources = uri_references.filter(lambda s: s != "")

# --------------------------------------------------------------------------------------------------------------------
# RFC 3339 timestamps.
# --------------------------------------------------------------------------------------------------------------------


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    year = draw(st.integers(0, 9999))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, calendar.monthrange(year or 2000, month)[1]))
    hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    fraction = draw(st.none() | st.from_regex(r"[0-9]{1,12}", fullmatch=True))
    offset = draw(
        st.one_of(
            st.sampled_from(["Z", "z"]),
            st.builds(
                lambda sign, h, m: f"{sign}{h:02}:{m:02}", st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59)
            ),
        )
    )
    sep = draw(st.sampled_from("Tt"))
    frac = "" if fraction is None else "." + fraction
    return f"{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}{frac}{offset}"


# --------------------------------------------------------------------------------------------------------------------
# Extensions and data.
# --------------------------------------------------------------------------------------------------------------------

extension_names = st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(lambda n: n not in RESERVED_NAMES)
extension_values = st.one_of(
    maybe_empty_strings, st.integers(types.INT_MIN, types.INT_MAX), st.booleans(), st.binary(max_size=16)
)

JSON_TYPES = [
    "application/json",
    "application/json; charset=utf-8",
    "text/json",
    "application/ld+json",
    "application/vnd.example.v1+json",
    "Application/JSON",
]
TEXT_TYPES = ["text/plain", "text/plain; charset=utf-8", 'text/plain; charset="utf-8"', "text/csv", "application/xml"]
BINARY_TYPES = ["application/octet-stream", "image/png"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=8,
).filter(lambda v: v is not None)

data_and_type = st.one_of(
    st.tuples(st.none(), st.none() | st.sampled_from(JSON_TYPES + TEXT_TYPES + BINARY_TYPES)),
    st.tuples(st.binary(max_size=32), st.none() | st.sampled_from(BINARY_TYPES)),
    st.tuples(st.text(max_size=16), st.sampled_from(TEXT_TYPES)),
    st.tuples(json_values, st.none() | st.sampled_from(JSON_TYPES)),
    st.tuples(st.text(max_size=8), st.none() | st.sampled_from(JSON_TYPES)),  # a JSON String is a JSON value too
)


@st.composite
def event_fields(draw: st.DrawFn) -> dict[str, Any]:
    data, content_type = draw(data_and_type)
    extensions = draw(st.dictionaries(extension_names, extension_values, max_size=4))
    if draw(st.booleans()):
        extensions["partitionkey"] = draw(extension_values)
    return {
        "specversion": "1.0",
        "id": draw(strings),
        "source": draw(sources),
        "type": draw(strings),
        "datacontenttype": content_type,
        "dataschema": draw(st.none() | absolute_uris),
        "subject": draw(st.none() | strings),
        "time": draw(st.none() | timestamps()),
        "extensions": extensions,
        "data": data,
    }


REQUIRED_EXAMPLE: dict[str, Any] = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


def _build(fields: dict[str, Any]) -> CloudEvent | None:
    try:
        return CloudEvent(**fields)
    except CloudEventError:
        return None  # test_every_generated_event_is_valid reports these; the round trips skip them


events = event_fields().map(_build).filter(lambda e: e is not None)


# --------------------------------------------------------------------------------------------------------------------
# What a decoded event must equal, as plain typed values (so True is not 1 and b"x" is not "x").
# --------------------------------------------------------------------------------------------------------------------


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return ("object", [(k, _typed(v)) for k, v in value.items()])
    if isinstance(value, list):
        return ("array", [_typed(v) for v in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def fields_of(event: CloudEvent) -> dict[str, Any]:
    fields = {name: getattr(event, name) for name in FIELDS}
    fields["extensions"] = dict(event.extensions)
    return fields


def typed(fields: dict[str, Any]) -> dict[str, Any]:
    out = {name: _typed(value) for name, value in fields.items() if name != "extensions"}
    out["extensions"] = {name: _typed(value) for name, value in sorted(fields["extensions"].items())}
    return out


def _base64(value: bytes) -> str:
    return binascii.b2a_base64(value, newline=False).decode()


def after_json(event: CloudEvent) -> dict[str, Any]:
    """The event as the JSON format gives it back: Binary extension values become Base64 Strings."""
    fields = fields_of(event)
    fields["extensions"] = {k: _base64(v) if type(v) is bytes else v for k, v in fields["extensions"].items()}
    return fields


def after_binary_mode(event: CloudEvent) -> dict[str, Any]:
    """The event as a binary-mode binding gives it back (see the module docstring)."""
    fields = fields_of(event)
    fields["extensions"] = {k: types.canonical_string(v) for k, v in fields["extensions"].items()}
    data, content_type = fields["data"], fields["datacontenttype"]
    if content_type is None and data is not None and type(data) is not bytes:
        fields["datacontenttype"] = "application/json"
    if data == b"" or (data == "" and content_type in TEXT_TYPES):
        fields["data"] = None
    return fields


# §3.1.3.2: printable ASCII except space, '"' and '%'; a '%' only as the start of a percent-encoded octet.
HEADER_VALUE = re.compile(r"(?:[\x21\x23\x24\x26-\x7e]|%[0-9A-Fa-f]{2})*")


# --------------------------------------------------------------------------------------------------------------------
# The strategy itself.
# --------------------------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(event_fields())
@example({**REQUIRED_EXAMPLE, "source": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"})
@example({**REQUIRED_EXAMPLE, "source": "//u@[v1.x]:80/p?q#f", "dataschema": "https://[v1.x]/s"})
@example({**REQUIRED_EXAMPLE, "extensions": {"empty": "", "none": b""}})
def test_every_generated_event_is_valid(fields: dict[str, Any]) -> None:
    # Everything the strategy draws is allowed by spec.md; the strict constructor must take it.
    CloudEvent(**fields)


@settings(max_examples=200, deadline=None)
@given(uri_references)
@example("//[v1.x]/")
def test_generated_uri_references_are_uri_references(value: str) -> None:
    assert types.is_uri_reference(value), value


@settings(max_examples=200, deadline=None)
@given(absolute_uris)
@example("a://[v1.x]")
def test_generated_absolute_uris_are_uris(value: str) -> None:
    assert types.is_uri(value), value


@settings(max_examples=200, deadline=None)
@given(timestamps())
def test_generated_timestamps_are_timestamps(value: str) -> None:
    assert types.is_timestamp(value), value


# --------------------------------------------------------------------------------------------------------------------
# JSON event format and batch format.
# --------------------------------------------------------------------------------------------------------------------


@SETTINGS
@given(events)
def test_json_format_round_trip(event: CloudEvent) -> None:
    decoded = json_format.decode(json_format.encode(event))
    assert typed(fields_of(decoded)) == typed(after_json(event))
    if not any(type(v) is bytes for v in event.extensions.values()):
        assert decoded == event


_SCHEMA = jsonschema_rs.Draft202012Validator(json_format.SCHEMA, validate_formats=True)


@SETTINGS
@given(events)
def test_every_event_the_codec_writes_is_valid_by_the_formats_json_schema(event: CloudEvent) -> None:
    # The schema goes into the audit service's OpenAPI document: it may say less than the codec checks,
    # never refuse an event the codec writes (json_format.SCHEMA).
    _SCHEMA.validate(json.loads(json_format.encode(event)))


@SETTINGS
@given(events)
def test_json_format_round_trip_from_text(event: CloudEvent) -> None:
    decoded = json_format.decode(json_format.encode(event).decode("utf-8"))
    assert typed(fields_of(decoded)) == typed(after_json(event))


@SETTINGS
@given(st.lists(events, max_size=3))
def test_json_batch_round_trip(batch: list[CloudEvent]) -> None:
    decoded = json_format.decode_batch(json_format.encode_batch(batch))
    assert [typed(fields_of(e)) for e in decoded] == [typed(after_json(e)) for e in batch]


# --------------------------------------------------------------------------------------------------------------------
# HTTP binding: binary, structured and batched content modes.
# --------------------------------------------------------------------------------------------------------------------


@SETTINGS
@given(events)
def test_http_binary_round_trip(event: CloudEvent) -> None:
    headers, body = http.encode_binary(event)
    decoded = http.decode(headers, body)
    assert decoded.mode is http.Mode.BINARY
    assert len(decoded.events) == 1
    assert typed(fields_of(decoded.events[0])) == typed(after_binary_mode(event))


@SETTINGS
@given(events)
def test_http_binary_headers(event: CloudEvent) -> None:
    headers, _ = http.encode_binary(event)
    expected = after_binary_mode(event)
    assert headers.get("content-type") == expected["datacontenttype"]
    attributes = {k: v for k, v in event.attributes().items() if k != "datacontenttype"}
    assert set(headers) - {"content-type"} == {"ce-" + name for name in attributes}
    for name, value in attributes.items():
        header = headers["ce-" + name]
        assert HEADER_VALUE.fullmatch(header), (name, header)
        assert unquote_to_bytes(header).decode("utf-8") == types.canonical_string(value)


@SETTINGS
@given(events)
def test_http_structured_round_trip(event: CloudEvent) -> None:
    headers, body = http.encode_structured(event)
    assert headers == {"content-type": "application/cloudevents+json"}
    decoded = http.decode(headers, body)
    assert decoded.mode is http.Mode.STRUCTURED
    assert [typed(fields_of(e)) for e in decoded.events] == [typed(after_json(event))]
    assert typed(fields_of(http.decode_event(headers, body))) == typed(after_json(event))


@SETTINGS
@given(st.lists(events, max_size=3))
def test_http_batch_round_trip(batch: list[CloudEvent]) -> None:
    headers, body = http.encode_batch(batch)
    assert headers == {"content-type": "application/cloudevents-batch+json"}
    decoded = http.decode(headers, body)
    assert decoded.mode is http.Mode.BATCH
    assert [typed(fields_of(e)) for e in decoded.events] == [typed(after_json(e)) for e in batch]


@SETTINGS
@given(events)
def test_http_binary_round_trip_with_header_pairs_in_any_case(event: CloudEvent) -> None:
    headers, body = http.encode_binary(event)
    pairs = [(name.title(), value) for name, value in headers.items()]
    decoded = http.decode(pairs, body)
    assert typed(fields_of(decoded.events[0])) == typed(after_binary_mode(event))


# --------------------------------------------------------------------------------------------------------------------
# HTTP header values (§3.1.3.2).
# --------------------------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(maybe_empty_strings)
def test_header_value_round_trip(value: str) -> None:
    encoded = http.encode_header_value(value)
    assert HEADER_VALUE.fullmatch(encoded), encoded
    assert http.decode_header_value(encoded) == value


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@settings(max_examples=300, deadline=None)
@given(
    st.binary(min_size=1, max_size=24).filter(_not_utf8),
    st.text(alphabet=string.ascii_letters + string.digits + "-._~", max_size=4),
    st.booleans(),
)
def test_percent_decoding_bytes_that_are_not_utf8_is_an_error(raw: bytes, prefix: str, lower: bool) -> None:
    encoded = prefix + "".join(f"%{b:02x}" if lower else f"%{b:02X}" for b in raw)
    with pytest.raises(CloudEventError):
        http.decode_header_value(encoded)


# --------------------------------------------------------------------------------------------------------------------
# Kafka binding: binary and structured content modes.
# --------------------------------------------------------------------------------------------------------------------


def _expected_key(event: CloudEvent) -> bytes | None:
    key = event.extensions.get("partitionkey")
    return None if key is None else types.canonical_string(key).encode("utf-8")


@SETTINGS
@given(events)
def test_kafka_binary_round_trip(event: CloudEvent) -> None:
    record = kafka.encode_binary(event)
    assert record.key == _expected_key(event)
    if event.data is None:
        assert record.value is None  # a tombstone
    else:
        assert record.value is not None
    decoded = kafka.decode(*record)
    assert typed(fields_of(decoded)) == typed(after_binary_mode(event))


@SETTINGS
@given(events)
def test_kafka_binary_headers(event: CloudEvent) -> None:
    record = kafka.encode_binary(event)
    expected = after_binary_mode(event)
    headers = dict(record.headers)
    assert len(headers) == len(record.headers)
    content_type = expected["datacontenttype"]
    assert headers.get("content-type") == (None if content_type is None else content_type.encode())
    attributes = {k: v for k, v in event.attributes().items() if k != "datacontenttype"}
    assert set(headers) - {"content-type"} == {"ce_" + name for name in attributes}
    for name, value in attributes.items():
        assert headers["ce_" + name] == types.canonical_string(value).encode("utf-8")


@SETTINGS
@given(events)
def test_kafka_structured_round_trip(event: CloudEvent) -> None:
    record = kafka.encode_structured(event)
    assert record.key == _expected_key(event)
    assert record.headers == [("content-type", b"application/cloudevents+json")]
    decoded = kafka.decode(*record)
    assert typed(fields_of(decoded)) == typed(after_json(event))


def test_kafka_event_without_data_is_a_tombstone() -> None:
    event = CloudEvent(
        specversion="1.0", id="1", source="/s", type="t", datacontenttype="application/json", extensions={"n": 1}
    )
    record = kafka.encode_binary(event)
    assert record.value is None
    assert record.key is None
    decoded = kafka.decode(*record)
    assert decoded.data is None
    assert decoded.datacontenttype == "application/json"
    assert dict(decoded.extensions) == {"n": "1"}


def test_kafka_key_is_the_partition_key() -> None:
    event = CloudEvent(specversion="1.0", id="1", source="/s", type="t", extensions={"partitionkey": "clé 😀"})
    record = kafka.encode_binary(event)
    assert record.key == "clé 😀".encode()
    assert kafka.decode(*record).extensions["partitionkey"] == "clé 😀"
    assert kafka.encode_structured(event).key == "clé 😀".encode()
