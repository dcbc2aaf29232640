"""Malformed input beyond the conformance data, through every decoder of the events kit.

Each row names its input, the exception class it must raise, the attribute the failure
names (``None`` for the message as a whole) and a piece of the rule. Where the code and
the CloudEvents 1.0.2 spec disagree, the row asserts the spec. Sections:
``spec`` = spec.md, ``json`` = formats/json-format.md, ``http`` / ``kafka`` = the bindings.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import pytest

from eventaudit.events import CloudEvent, CloudEventError, EventTooLargeError, UnsupportedFormatError
from eventaudit.events.bindings import http, kafka
from eventaudit.events.formats import json as json_format

MINIMAL: dict[str, Any] = {"specversion": "1.0", "id": "e-1", "source": "/src", "type": "t.ype"}
_DROP = object()


def event(**members: Any) -> bytes:
    """The minimal valid event with ``members`` set (or removed, with ``_DROP``), as JSON bytes."""
    obj = {**MINIMAL, **members}
    return json.dumps({k: v for k, v in obj.items() if v is not _DROP}).encode()


def raw_event(tail: str) -> bytes:
    """The minimal event written by hand, with ``tail`` (raw JSON members) appended."""
    return ('{"specversion":"1.0","id":"e-1","source":"/src","type":"t.ype"' + tail + "}").encode()


def js(body: bytes, **kwargs: Any) -> Callable[[], object]:
    return partial(json_format.decode, body, **kwargs)


def batch(body: bytes) -> Callable[[], object]:
    return partial(json_format.decode_batch, body)


BINARY: list[tuple[str, str]] = [("ce-specversion", "1.0"), ("ce-id", "e-1"), ("ce-source", "/src"), ("ce-type", "t")]


def binary(*extra: tuple[str, str], drop: str | None = None, **replace: str) -> list[tuple[str, str]]:
    """Binary-mode HTTP header pairs: the minimal event, ``replace``d, ``drop``ped, plus ``extra``."""
    pairs = [(k, replace.pop(k[3:], v)) for k, v in BINARY if k != drop]
    return pairs + [(f"ce-{k}", v) for k, v in replace.items()] + list(extra)


def http_(headers: Any, body: bytes = b"", **kwargs: Any) -> Callable[[], object]:
    return partial(http.decode, headers, body, **kwargs)


KAFKA: list[tuple[str, bytes]] = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"e-1"),
    ("ce_source", b"/src"),
    ("ce_type", b"t"),
]
STRUCTURED = [("content-type", b"application/cloudevents+json")]


def kafka_(key: bytes | None, headers: Any, value: bytes | None, **kwargs: Any) -> Callable[[], object]:
    return partial(kafka.decode, key, headers, value, **kwargs)


class Row(NamedTuple):
    id: str
    call: Callable[[], object]
    error: type[CloudEventError]
    attribute: str | None
    rule: str
    index: int | None = None  # the batch_index of the failure, for batches


CE, UNSUPPORTED, TOO_LARGE = CloudEventError, UnsupportedFormatError, EventTooLargeError
MALFORMED = "malformed JSON"
NOT_STRING = "must be a String"
CONTROL = "control characters"
EXT_TYPE = "must be String, Integer, Boolean or Binary"
INT_RANGE = "32-bit"
NAME = "a-z and 0-9"
TIME = "RFC 3339"
MiB = 1024 * 1024
TEN_MB_DATA = "x" * (10 * 1000 * 1000)
TEN_MB_EVENT = event(datacontenttype="text/plain", data=TEN_MB_DATA)
DEEP = "[" * 10_000 + "]" * 10_000

_WRONG_TYPES = {"number": 42, "bool": True, "object": {"a": "b"}, "array": ["a"]}
_STRING_ATTRIBUTES = ("id", "source", "type", "datacontenttype", "dataschema", "subject", "time")

# spec §type-system / json §2.2: every core attribute is a JSON string, never another JSON type.
WRONG_TYPE_ROWS = [
    Row(f"json-{name}-as-{kind}-spec-type-system", js(event(**{name: value})), CE, name, NOT_STRING)
    for name in _STRING_ATTRIBUTES
    for kind, value in _WRONG_TYPES.items()
] + [
    Row(f"json-specversion-as-{kind}-spec-specversion", js(event(specversion=value)), CE, "specversion", "'1.0'")
    for kind, value in {**_WRONG_TYPES, "number": 1.0}.items()
]

ROWS: list[Row] = [
    *WRONG_TYPE_ROWS,
    # --- JSON syntax (RFC 8259; json §3 envelope) -----------------------------------------
    Row("json-truncated", js(event()[:-7]), CE, None, MALFORMED),
    Row("json-empty-body", js(b""), CE, None, MALFORMED),
    Row("json-whitespace-only", js(b" \r\n\t"), CE, None, MALFORMED),
    Row("json-trailing-garbage", js(event() + b"x"), CE, None, MALFORMED),
    Row("json-two-documents", js(event() + event()), CE, None, MALFORMED),
    Row("json-top-level-array-json-3", js(b"[" + event() + b"]"), CE, None, "must be a JSON object"),
    Row("json-top-level-string-json-3", js(b'"event"'), CE, None, "must be a JSON object"),
    Row("json-top-level-null-json-3", js(b"null"), CE, None, "must be a JSON object"),
    Row("json-NaN-literal", js(raw_event(',"data":NaN')), CE, None, MALFORMED),
    Row("json-Infinity-literal", js(raw_event(',"data":Infinity')), CE, None, MALFORMED),
    Row("json-minus-Infinity-literal", js(raw_event(',"data":-Infinity')), CE, None, MALFORMED),
    Row("json-1e400-overflows", js(raw_event(',"data":1e400')), CE, None, MALFORMED),
    Row("json-minus-1e400-overflows", js(raw_event(',"data":[-1e400]')), CE, None, MALFORMED),
    Row(
        "json-invalid-utf8-body", js(raw_event(',"subject":"\xff"').replace(b"\xc3\xbf", b"\xff")), CE, None, MALFORMED
    ),
    Row("json-overlong-utf8-body", js(raw_event(',"subject":"a"').replace(b'"a"', b'"\xc0\xaf"')), CE, None, MALFORMED),
    # spec §type-system: "\uDEAD" (an unpaired surrogate) is no String; refused while parsing.
    Row("json-lone-surrogate-escape-in-id", js(event(id="\ud800")), CE, None, MALFORMED),
    Row("json-lone-low-surrogate-in-subject", js(raw_event(r',"subject":"a\uDEAD"')), CE, None, MALFORMED),
    Row("json-lone-surrogate-in-data", js(raw_event(r',"data":"\udc00"')), CE, None, MALFORMED),
    Row("json-10000-deep-data-rfc8259-9", js(raw_event(f',"data":{DEEP}')), CE, None, MALFORMED),
    Row("json-huge-integer-literal", js(raw_event(',"data":' + "9" * 5000)), CE, None, MALFORMED),
    # --- repeated members (RFC 8259 §4: names SHOULD be unique; the decoder documents it refuses them)
    Row("json-duplicate-id", js(raw_event(',"id":"e-2"')), CE, "id", "more than once"),
    Row("json-duplicate-id-unicode-escape", js(raw_event(r',"\u0069d":"e-2"')), CE, "id", "more than once"),
    Row("json-duplicate-extension", js(raw_event(',"ext":"a","ext":"b"')), CE, "ext", "more than once"),
    # Re-encoding 12345678901234567.0 gives 1.2345678901234568e16, 2 bytes longer: six of them make up
    # for the 11 bytes of the dropped '"id":"e-1",' and one blank, so the cheap uniqueness proof passes.
    Row(
        "json-duplicate-id-masked-by-long-floats",
        js(raw_event(',"id":"e-2","data":[' + ",".join(["12345678901234567.0"] * 6) + "]") + b" "),
        CE,
        "id",
        "more than once",
    ),
    # --- extensions (spec §naming-conventions, §type-system; json §2.2) -------------------
    Row("json-extension-2**31-spec-type-system", js(event(ext=2**31)), CE, "ext", INT_RANGE),
    Row("json-extension-minus-2**31-minus-1", js(event(ext=-(2**31) - 1)), CE, "ext", INT_RANGE),
    Row("json-extension-10**40", js(event(ext=10**40)), CE, "ext", INT_RANGE),
    Row("json-extension-float-json-2.2", js(event(ext=1.5)), CE, "ext", EXT_TYPE),
    Row("json-extension-1.0-is-no-integer-json-2.2", js(raw_event(',"ext":1.0')), CE, "ext", EXT_TYPE),
    Row("json-extension-1e2-is-no-integer-json-2.2", js(raw_event(',"ext":1e2')), CE, "ext", EXT_TYPE),
    Row("json-extension-object", js(event(ext={"a": 1})), CE, "ext", EXT_TYPE),
    Row("json-extension-array", js(event(ext=[1])), CE, "ext", EXT_TYPE),
    Row("json-extension-name-uppercase", js(event(extA="v")), CE, "extA", NAME),
    Row("json-extension-name-dash", js(event(**{"ext-a": "v"})), CE, "ext-a", NAME),
    Row("json-extension-name-empty", js(event(**{"": "v"})), CE, "", NAME),
    Row("json-extension-name-non-ascii", js(event(**{"extä": "v"})), CE, "extä", NAME),
    Row("json-extension-value-control-char", js(event(ext="a\u0007b")), CE, "ext", CONTROL),
    # --- strings (spec §type-system: no C0/C1 controls, no noncharacters) ------------------
    Row("json-id-with-nul", js(event(id="a\u0000b")), CE, "id", CONTROL),
    Row("json-id-with-newline", js(event(id="a\nb")), CE, "id", CONTROL),
    Row("json-id-with-del", js(event(id="a\u007fb")), CE, "id", CONTROL),
    Row("json-subject-with-c1-control", js(event(subject="a\u0085b")), CE, "subject", CONTROL),
    Row("json-subject-with-tab", js(event(subject="a\tb")), CE, "subject", CONTROL),
    Row("json-subject-noncharacter-uffff", js(event(subject="a\uffffb")), CE, "subject", "noncharacters"),
    Row("json-type-noncharacter-ufdd0", js(event(type="t\ufdd0")), CE, "type", "noncharacters"),
    # --- data and data_base64 (json §3.1) --------------------------------------------------
    Row("json-data-and-data-base64", js(event(data={"a": 1}, data_base64="TWE=")), CE, "data", "mutually exclusive"),
    Row("json-data-base64-bad-alphabet", js(event(data_base64="!!!!")), CE, "data_base64", "Base64"),
    Row("json-data-base64-bad-padding", js(event(data_base64="TWE")), CE, "data_base64", "Base64"),
    Row("json-data-base64-with-newline-rfc4648-3.3", js(event(data_base64="TW\nE=")), CE, "data_base64", "Base64"),
    Row("json-data-base64-number", js(event(data_base64=12)), CE, "data_base64", "Base64 String"),
    Row("json-data-base64-object", js(event(data_base64={"a": "TWE="})), CE, "data_base64", "Base64 String"),
    # --- time (spec §time: RFC 3339 §5.6) ---------------------------------------------------
    Row("json-time-24h-rfc3339", js(event(time="2018-04-05T24:00:00Z")), CE, "time", TIME),
    Row("json-time-feb-30", js(event(time="2019-02-30T00:00:00Z")), CE, "time", TIME),
    Row("json-time-feb-29-no-leap-year", js(event(time="2019-02-29T00:00:00Z")), CE, "time", TIME),
    Row("json-time-apr-31", js(event(time="2018-04-31T00:00:00Z")), CE, "time", TIME),
    Row("json-time-month-13", js(event(time="2018-13-05T00:00:00Z")), CE, "time", TIME),
    Row("json-time-month-00", js(event(time="2018-00-05T00:00:00Z")), CE, "time", TIME),
    Row("json-time-no-offset", js(event(time="2018-04-05T17:31:00")), CE, "time", TIME),
    Row("json-time-offset-minute-60", js(event(time="2018-04-05T17:31:00+01:60")), CE, "time", TIME),
    Row("json-time-non-ascii-digit", js(event(time="2018-04-0\u0665T17:31:00Z")), CE, "time", TIME),
    Row("json-time-empty-fraction", js(event(time="2018-04-05T17:31:00.Z")), CE, "time", TIME),
    # --- URIs (spec §dataschema: absolute URI, RFC 3986 §4.3; §source: URI-reference §4.1)
    Row("json-dataschema-relative", js(event(dataschema="/schema.json")), CE, "dataschema", "absolute URI"),
    Row("json-dataschema-fragment", js(event(dataschema="https://x.io/s#frag")), CE, "dataschema", "absolute URI"),
    Row("json-dataschema-space", js(event(dataschema="https://x.io/a b")), CE, "dataschema", "absolute URI"),
    Row(
        "json-dataschema-non-ascii-port",
        js(event(dataschema="http://x.io:\u0668\u0660/s")),
        CE,
        "dataschema",
        "absolute URI",
    ),
    Row("json-source-non-ascii-iri-rfc3986-2", js(event(source="/caf\u00e9")), CE, "source", "URI-reference"),
    Row("json-source-space", js(event(source="/a b")), CE, "source", "URI-reference"),
    Row("json-source-double-colon", js(event(source="::")), CE, "source", "URI-reference"),
    Row("json-source-bad-percent", js(event(source="/a%zz")), CE, "source", "URI-reference"),
    Row("json-source-unclosed-ip-literal", js(event(source="http://[::1/x")), CE, "source", "URI-reference"),
    # --- datacontenttype (spec §datacontenttype: RFC 2046) ----------------------------------
    Row("json-datacontenttype-no-subtype", js(event(datacontenttype="text/")), CE, "datacontenttype", "media type"),
    Row(
        "json-datacontenttype-parameter-without-value",
        js(event(datacontenttype="application/json; charset")),
        CE,
        "datacontenttype",
        "media type",
    ),
    Row(
        "json-datacontenttype-control-char",
        js(event(datacontenttype="text/plain\n")),
        CE,
        "datacontenttype",
        CONTROL,
    ),
    # --- batches (json §4) ------------------------------------------------------------------
    Row("batch-is-an-object-json-4", batch(event()), CE, None, "JSON array"),
    Row("batch-of-numbers", batch(b"[1, 2]"), CE, None, "must be a JSON object", 1),
    Row("batch-of-strings", batch(b'["a"]'), CE, None, "must be a JSON object", 0),
    Row("batch-of-null", batch(b"[" + event() + b", null]"), CE, None, "must be a JSON object", 1),
    Row("batch-of-nested-arrays", batch(b"[[" + event() + b"]]"), CE, None, "must be a JSON object", 0),
    Row("batch-second-member-bad-id", batch(b"[" + event() + b"," + event(id="") + b"]"), CE, "id", "non-empty", 1),
    Row("batch-truncated", batch(b"[" + event()), CE, None, MALFORMED),
    Row("batch-empty-body", batch(b""), CE, None, MALFORMED),
    Row("batch-10000-deep", batch(DEEP.encode()), CE, None, MALFORMED),
    # --- size limits (spec §size-limits) -----------------------------------------------------
    Row("json-10MB-over-1MiB-limit", js(TEN_MB_EVENT, max_size=MiB), TOO_LARGE, None, "over the limit"),
    Row(
        "http-10MB-over-1MiB-limit",
        http_([("content-type", "application/cloudevents+json")], TEN_MB_EVENT, max_size=MiB),
        TOO_LARGE,
        None,
        "over the limit",
    ),
    Row("kafka-10MB-over-1MiB-limit", kafka_(None, STRUCTURED, TEN_MB_EVENT, max_size=MiB), TOO_LARGE, None, "limit"),
    # --- HTTP binary mode headers (http §3.1.3.2) ---------------------------------------------
    Row("http-ce-id-raw-crlf", http_(binary(id="a\r\nb")), CE, "id", "control characters"),
    Row("http-ce-subject-raw-nul", http_(binary(subject="a\x00b")), CE, "subject", "control characters"),
    Row("http-ce-id-raw-cr-beside-escape", http_(binary(id="a%41\rb")), CE, "id", "CR, LF or NUL"),
    # A percent-decoded CR/LF/NUL is still no String character (spec §type-system).
    Row("http-ce-id-encoded-crlf", http_(binary(id="a%0D%0Ab")), CE, "id", CONTROL),
    Row("http-ce-ext-encoded-nul", http_(binary(ext="a%00b")), CE, "ext", CONTROL),
    Row("http-ce-id-percent-zz", http_(binary(id="a%zz")), CE, "id", "two hex digits"),
    Row("http-ce-id-percent-one-digit", http_(binary(id="a%4")), CE, "id", "two hex digits"),
    Row("http-ce-id-trailing-percent", http_(binary(id="a%")), CE, "id", "two hex digits"),
    Row("http-ce-id-encoded-invalid-utf8-c328", http_(binary(id="%C3%28")), CE, "id", "UTF-8"),
    Row("http-ce-id-encoded-invalid-utf8-ff", http_(binary(id="%FF")), CE, "id", "UTF-8"),
    Row("http-ce-id-encoded-overlong-c0a0", http_(binary(id="a%C0%A0")), CE, "id", "UTF-8"),
    Row("http-ce-id-encoded-surrogate-eda080", http_(binary(id="%ED%A0%80")), CE, "id", "UTF-8"),
    Row("http-ce-id-quoted-with-bare-quote-rfc7230", http_(binary(id='"a"b"')), CE, "id", "unescaped"),
    Row("http-duplicate-ce-id-http-3.1.3.1", http_([*BINARY, ("ce-id", "e-2")]), CE, "id", "more than once"),
    Row("http-duplicate-ce-id-other-case", http_([*BINARY, ("CE-ID", "e-1")]), CE, "id", "more than once"),
    Row(
        "http-ce-datacontenttype-header-http-3.1.1",
        http_([*binary(datacontenttype="text/plain"), ("content-type", "text/plain")], b"hi"),
        CE,
        "datacontenttype",
        "Content-Type",
    ),
    Row("http-ce-data-reserved-spec-naming", http_(binary(data="x")), CE, "data", "reserved"),
    Row("http-ce-empty-name", http_(binary(("ce-", "x"))), CE, "", NAME),
    Row("http-ce-underscore-name", http_(binary(("ce-my_ext", "x"))), CE, "my_ext", NAME),
    Row("http-no-ce-specversion", http_(binary(drop="ce-specversion")), CE, "specversion", "is required"),
    Row("http-ce-specversion-0.3", http_(binary(specversion="0.3")), CE, "specversion", "'1.0'"),
    Row("http-ce-time-garbage", http_(binary(time="yesterday")), CE, "time", TIME),
    Row(
        "http-binary-json-body-not-json-http-3.1.2",
        http_([*BINARY, ("content-type", "application/json")], b"{nope"),
        CE,
        "data",
        "not valid JSON",
    ),
    Row(
        "http-binary-10000-deep-json-body",
        http_([*BINARY, ("content-type", "application/json")], DEEP.encode()),
        CE,
        "data",
        "JSON",
    ),
    Row(
        "http-no-ce-headers-application-json",
        http_({"content-type": "application/json"}, b"{}"),
        UNSUPPORTED,
        None,
        "not a CloudEvent",
    ),
    Row("http-no-headers-at-all", http_([], b""), UNSUPPORTED, None, "not a CloudEvent"),
    Row(
        "http-cloudevents+xml-http-3.2",
        http_({"content-type": "application/cloudevents+xml"}, b"<e/>"),
        UNSUPPORTED,
        None,
        "unsupported event format",
    ),
    Row(
        "http-structured-empty-body",
        http_({"content-type": "application/cloudevents+json"}, b""),
        CE,
        None,
        MALFORMED,
    ),
    Row(
        "http-structured-invalid-json",
        http_({"Content-Type": "application/cloudevents+json; charset=utf-8"}, b"{'id': 1}"),
        CE,
        None,
        MALFORMED,
    ),
    Row(
        "http-batch-that-is-an-object-http-3.3",
        http_({"content-type": "application/cloudevents-batch+json"}, event()),
        CE,
        None,
        "JSON array",
    ),
    # --- Kafka (kafka §3) -----------------------------------------------------------------------
    Row("kafka-structured-garbage-value", kafka_(None, STRUCTURED, b"\x00\x01garbage"), CE, None, MALFORMED),
    Row("kafka-structured-null-value-kafka-3.3", kafka_(None, STRUCTURED, None), CE, None, "needs a value"),
    Row("kafka-structured-array-value", kafka_(None, STRUCTURED, b"[]"), CE, None, "must be a JSON object"),
    Row(
        "kafka-structured-avro",
        kafka_(None, [("content-type", b"application/cloudevents+avro")], b"\x00"),
        UNSUPPORTED,
        None,
        "unsupported event format",
    ),
    Row(
        "kafka-batch-content-type",
        kafka_(None, [("content-type", b"application/cloudevents-batch+json")], b"[]"),
        UNSUPPORTED,
        None,
        "unsupported event format",
    ),
    # kafka §3: ce_ headers mean binary mode, where specversion is REQUIRED (as over HTTP).
    Row("kafka-no-ce-specversion", kafka_(None, KAFKA[1:], b"x"), CE, "specversion", "required"),
    Row("kafka-no-headers", kafka_(b"k", [], b"{}"), UNSUPPORTED, None, "not a CloudEvent"),
    Row(
        "kafka-header-value-invalid-utf8-kafka-3.2.3",
        kafka_(None, [*KAFKA, ("ce_subject", b"\xff\xfe")], None),
        CE,
        "subject",
        "not valid UTF-8",
    ),
    Row("kafka-key-invalid-utf8", kafka_(b"\xc3\x28", KAFKA, None), CE, "partitionkey", "not valid UTF-8"),
    Row(
        "kafka-ce-datacontenttype-disagrees-kafka-3.2.1",
        kafka_(None, [*KAFKA, ("content-type", b"text/plain"), ("ce_datacontenttype", b"application/json")], b"{}"),
        CE,
        "datacontenttype",
        "disagrees",
    ),
    Row("kafka-duplicate-ce-id", kafka_(None, [*KAFKA, ("ce_id", b"e-2")], None), CE, "id", "more than once"),
    Row(
        "kafka-ce-id-control-char", kafka_(None, [*KAFKA[:1], ("ce_id", b"a\nb"), *KAFKA[2:]], None), CE, "id", CONTROL
    ),
    Row(
        "kafka-ce-specversion-1.1",
        kafka_(None, [("ce_specversion", b"1.1"), *KAFKA[1:]], None),
        CE,
        "specversion",
        "'1.0'",
    ),
    Row("kafka-ce-data-reserved", kafka_(None, [*KAFKA, ("ce_data", b"x")], None), CE, "data", "reserved"),
    Row(
        "kafka-binary-json-value-not-json-kafka-3.2.2",
        kafka_(None, [*KAFKA, ("content-type", b"application/json")], b"{nope"),
        CE,
        "data",
        "not valid JSON",
    ),
]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in ROWS])
def test_malformed_input_is_rejected_as_the_spec_says(row: Row) -> None:
    with pytest.raises(CloudEventError) as caught:
        row.call()
    error = caught.value
    assert type(error) is row.error, f"{type(error).__name__}: {error}"
    assert any(
        f.attribute == row.attribute and row.rule in f.rule and (row.index is None or f.batch_index == row.index)
        for f in error.failures
    ), [tuple(f) for f in error.failures]


@pytest.mark.parametrize("row", [pytest.param(r, id=r.id) for r in ROWS])
def test_nothing_but_cloud_event_error_escapes(row: Row) -> None:
    escaped: Exception | None = None
    try:
        row.call()
    except Exception as error:
        escaped = error
    if escaped is not None:
        assert isinstance(escaped, CloudEventError), f"{type(escaped).__name__} escaped: {escaped!r}"
        assert escaped.failures, "a CloudEventError must list its failures"
        assert str(escaped)


def test_rows_are_many_and_unique() -> None:
    assert len(ROWS) >= 45
    assert len({r.id for r in ROWS}) == len(ROWS)


def test_ten_megabyte_event_decodes_without_a_limit() -> None:
    assert len(TEN_MB_EVENT) > 10 * MiB - MiB // 2
    decoded = json_format.decode(TEN_MB_EVENT)
    assert decoded.data == TEN_MB_DATA
    (via_http,) = http.decode({"content-type": "application/cloudevents+json"}, TEN_MB_EVENT).events
    assert via_http == decoded
    assert kafka.decode(None, STRUCTURED, TEN_MB_EVENT) == decoded


# Twins of the rows above that are valid and must decode: the checks must not be broader than the spec.
VALID_TWINS: list[tuple[str, Callable[[], object]]] = [
    ("json-extension-int32-bounds", js(event(lo=-(2**31), hi=2**31 - 1))),
    ("json-subject-paired-surrogates-spec-type-system", js(raw_event(r',"subject":"\uD800\uDEAD"'))),
    ("json-time-feb-29-leap-year", js(event(time="2020-02-29T00:00:00Z"))),
    ("json-time-lowercase-t-z-rfc3339-5.6", js(event(time="2020-02-29t00:00:00.5z"))),
    ("json-dataschema-absolute-with-query", js(event(dataschema="https://x.io/s?v=1"))),
    ("json-source-mailto-spec-source-example", js(event(source="mailto:cncf-wg-serverless@lists.cncf.io"))),
    ("json-source-urn-uuid-spec-source-example", js(event(source="urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"))),
    ("json-source-tag-uri-rfc4151", js(event(source="tag:example.com,2005:feed"))),
    ("http-ce-id-encoded-utf8", http_(binary(id="caf%C3%A9"))),
    ("http-ce-id-quoted-rfc7230", http_(binary(id='"a \\"b\\""'))),
    ("kafka-same-header-twice", kafka_(None, [*KAFKA, ("ce_id", b"e-1")], None)),
]


@pytest.mark.parametrize(("name", "call"), VALID_TWINS, ids=[name for name, _ in VALID_TWINS])
def test_valid_twin_decodes(name: str, call: Callable[[], object]) -> None:
    result = call()
    assert isinstance(result, CloudEvent | http.Decoded), name


def test_data_survives_a_null_data_base64() -> None:
    # json §2.2: a null member is treated as absent, so this is the event {"data": "text"}.
    decoded = json_format.decode(event(data="text", data_base64=None))
    assert decoded.data == "text"


def test_encoded_header_values_decode_to_their_text() -> None:
    (decoded,) = http.decode(binary(id="caf%C3%A9", subject='"a \\"b\\""'), b"").events
    assert (decoded.id, decoded.subject) == ("café", 'a "b"')
