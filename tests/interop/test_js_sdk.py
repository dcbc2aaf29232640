"""Interop with the official JavaScript SDK, npm ``cloudevents`` (pinned in js/package.json).

Both directions over HTTP in binary, structured and batched mode, and the SDK's Kafka records
(binary and structured) into our Kafka decoder. ``js/ce.mjs`` runs the SDK; every command of this
module goes to one ``node`` process (the ``js`` fixture), so the module costs one Node start.

The SDK has no batch serializer; ``ce.mjs`` batches the SDK's own JSON of each event (toJSON).

Where the SDK breaks the spec, the main tables leave that input out and a ``test_js_*`` test pins
the SDK's behaviour as observed, next to ours, so an SDK upgrade that fixes it shows up here.
"""

from __future__ import annotations

import base64
import functools
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from eventaudit.events import CloudEvent, CloudEventError
from eventaudit.events.bindings import http, kafka
from tests.conftest import require
from tests.interop.compare import instant, view, view_of

pytestmark = pytest.mark.interop

JS_DIR = Path(__file__).parent / "js"
SETUP = "run `make test`: it installs the JavaScript SDK into tests/interop/js/node_modules with `npm ci`"
SOURCE = "https://example.com/interop/js"
IST = timezone(timedelta(hours=5, minutes=30))
URN = "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"  # the first example of spec.md#source-1


# --- one node process for the whole module ----------------------------------------------------

Command = Callable[[], dict[str, Any]]
COMMANDS: dict[str, Command] = {}


def command(key: str, build: Command) -> str:
    """Register a command for the module's node run; built lazily, since our encoder may refuse."""
    assert key not in COMMANDS, key
    COMMANDS[key] = build
    return key


@dataclass
class Js:
    results: dict[str, dict[str, Any]]
    errors: dict[str, CloudEventError] = field(default_factory=dict)

    def __call__(self, key: str) -> dict[str, Any]:
        """The SDK's answer to the command ``key``; re-raises our error if we could not build it."""
        if key in self.errors:
            raise self.errors[key]
        return self.results[key]

    def ok(self, key: str) -> dict[str, Any]:
        result = self(key)
        assert result["ok"], result["error"]
        return result


@pytest.fixture(scope="module")
def js() -> Js:
    node = shutil.which("node")
    require(node is not None, f"node is not on PATH; {SETUP}")
    require((JS_DIR / "node_modules" / "cloudevents" / "package.json").is_file(), f"no node_modules; {SETUP}")
    assert node is not None
    built: dict[str, dict[str, Any]] = {}
    errors: dict[str, CloudEventError] = {}
    for key, build in COMMANDS.items():
        try:
            built[key] = build()
        except CloudEventError as exc:
            errors[key] = exc
    done = subprocess.run(
        [node, "ce.mjs"],
        cwd=JS_DIR,
        input=json.dumps(list(built.values())),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return Js(dict(zip(built, json.loads(done.stdout), strict=True)), errors)


# --- messages between the SDK's JSON and our codecs -------------------------------------------


def b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def body(result: dict[str, Any]) -> bytes | None:
    return None if result["body_base64"] is None else base64.b64decode(result["body_base64"])


def decode_command(binding: str, headers: dict[str, str], payload: bytes | None, key: str | None = None) -> Command:
    return lambda: {"op": "decode", "binding": binding, "headers": headers, "body_base64": b64(payload), "key": key}


def encode_command(binding: str, mode: str, *events: dict[str, Any]) -> Command:
    return lambda: {"op": "encode", "binding": binding, "mode": mode, "events": list(events)}


def ours_from_http(result: dict[str, Any]) -> http.Decoded:
    return http.decode(result["headers"], body(result) or b"")


def ours_from_kafka(result: dict[str, Any]) -> CloudEvent:
    headers = [(name, value.encode()) for name, value in result["headers"].items()]
    return kafka.decode(result["key"], headers, body(result))


def js_view(event: dict[str, Any], *, as_strings: bool) -> dict[str, Any]:
    """The view (see compare.py) of an event as the SDK holds it, at its millisecond precision."""
    data = event["data"]
    value = base64.b64decode(data["base64"]) if data["kind"] == "bytes" else data.get("value")
    return view(event["attributes"], value, as_strings=as_strings, milliseconds=True)


def our_view(event: CloudEvent, *, as_strings: bool) -> dict[str, Any]:
    return view_of(event, as_strings=as_strings, milliseconds=True)


# --- the SDK encodes, we decode ---------------------------------------------------------------


def js_event(attributes: dict[str, Any], kind: str | None = None, value: Any = None) -> dict[str, Any]:
    event: dict[str, Any] = {"attributes": attributes}
    if kind is not None:
        event["data"] = {"kind": kind, "value": base64.b64encode(value).decode() if kind == "bytes" else value}
    return event


JSON_DATA = {"user": {"id": 7, "name": "Zoë"}, "tags": ["a", "b"], "active": True, "score": 1.5, "note": None}
JS_CASES: dict[str, dict[str, Any]] = {
    "minimal": js_event({"type": "com.example.minimal", "source": SOURCE}),
    "json-data": js_event(
        {"type": "com.example.json", "source": SOURCE, "datacontenttype": "application/json"}, "json", JSON_DATA
    ),
    "text-data": js_event(
        {"type": "com.example.text", "source": SOURCE, "datacontenttype": "text/plain; charset=utf-8"},
        "text",
        "hello, wörld\nsecond line",
    ),
    "bytes-data": js_event(
        {"type": "com.example.bytes", "source": SOURCE, "datacontenttype": "application/octet-stream"},
        "bytes",
        bytes(range(256)),
    ),
    "extensions": js_event(
        {
            "type": "com.example.extensions",
            "source": SOURCE,
            "datacontenttype": "application/json",
            "partitionkey": "user-42",
            "tenant": "acme",
            "count": 42,
            "on": True,
        },
        "json",
        {"k": "v"},
    ),
    # Header-safe subject: the SDK does not percent-encode (test_js_binary_headers_are_not_percent_encoded).
    "subject-dataschema-time-offset": js_event(
        {
            "type": "com.example.context",
            "source": "/users",
            "id": "context-1",
            "subject": "users/42",
            "dataschema": "https://example.com/schemas/user-v1.json",
            "time": "2024-02-29T23:59:59.123+05:30",
            "datacontenttype": "application/json",
        },
        "json",
        {"id": 42},
    ),
    "urn-source": js_event(
        {"type": "com.example.urn", "source": URN, "datacontenttype": "text/plain"}, "text", "urn source"
    ),
}
JS_MODES = ["http-binary", "http-structured", "kafka-binary", "kafka-structured"]
# Left out, with the test that shows why:
JS_KNOWN_BUGS = {("http-binary", "minimal"): "test_js_binary_invents_a_datacontenttype"}
JS_TO_US = [
    pytest.param(
        mode, case, command(f"js-to-us/{mode}/{case}", encode_command(*mode.split("-"), event)), id=f"{mode}-{case}"
    )
    for mode in JS_MODES
    for case, event in JS_CASES.items()
    if (mode, case) not in JS_KNOWN_BUGS
]


@pytest.mark.parametrize(("mode", "case", "key"), JS_TO_US)
def test_js_event_decoded_by_us(js: Js, mode: str, case: str, key: str) -> None:
    result = js.ok(key)
    assert result["wire_error"] is None
    (sent,) = result["events"]
    if mode.startswith("http"):
        decoded = ours_from_http(result)
        assert decoded.mode is (http.Mode.BINARY if mode == "http-binary" else http.Mode.STRUCTURED)
        (ours,) = decoded.events
    else:
        ours = ours_from_kafka(result)
    binary = mode.endswith("binary")
    assert our_view(ours, as_strings=binary) == js_view(sent, as_strings=binary)


# Every case but urn-source, which the per-mode tests cover: one bad member would hide the rest.
BATCHED = [case for case in JS_CASES if case != "urn-source"]
JS_BATCH = command("js-to-us/http-batch", encode_command("http", "batch", *(JS_CASES[case] for case in BATCHED)))


def test_js_batch_decoded_by_us(js: Js) -> None:
    result = js.ok(JS_BATCH)
    decoded = ours_from_http(result)
    assert decoded.mode is http.Mode.BATCH
    assert [our_view(e, as_strings=False) for e in decoded.events] == [
        js_view(e, as_strings=False) for e in result["events"]
    ]


# --- we encode, the SDK decodes ---------------------------------------------------------------

OUR_CASES: dict[str, Callable[[], CloudEvent]] = {
    "create-minimal": lambda: CloudEvent.create(type="com.example.minimal", source=SOURCE),
    "create-json": lambda: CloudEvent.create(type="com.example.json", source=SOURCE, data=JSON_DATA),
    "create-text": lambda: CloudEvent.create(type="com.example.text", source=SOURCE, data="hello, wörld\nline 2"),
    "create-bytes": lambda: CloudEvent.create(type="com.example.bytes", source=SOURCE, data=bytes(range(256))),
    "create-extensions": lambda: CloudEvent.create(
        type="com.example.extensions",
        source=SOURCE,
        data={"k": "v"},
        extensions={"partitionkey": "user-42", "tenant": "acme", "count": -7, "on": True, "blob": b"\x00\xffbin"},
    ),
    # Header-safe subject: the SDK does not percent-decode (test_js_binary_does_not_percent_decode).
    "create-subject-dataschema-time-offset": lambda: CloudEvent.create(
        type="com.example.context",
        source="/users",
        id="context-1",
        subject="users/42",
        dataschema="https://example.com/schemas/user-v1.json",
        time=datetime(2024, 2, 29, 23, 59, 59, 123000, tzinfo=IST),
    ),
    "strict-all-attributes": lambda: CloudEvent(
        specversion="1.0",
        id="strict-1",
        source="mailto:interop@example.com",
        type="com.example.strict",
        datacontenttype="application/json",
        dataschema="https://example.com/schemas/list.json",
        subject="list",
        time="2024-02-29T23:59:59.5-08:00",
        extensions={"seq": 7},
        data=[1, "two", {"three": None}],
    ),
    "strict-urn-source": lambda: CloudEvent(
        specversion="1.0", id="strict-2", source=URN, type="com.example.urn", time="2024-01-01T00:00:00Z"
    ),
}


# Events of the single-purpose tests below, kept out of the main table.
SPECIAL: dict[str, Callable[[], CloudEvent]] = {}


@functools.cache
def our_event(case: str) -> CloudEvent:
    """One instance per case, so the message the SDK read and the test's expectation agree on id and time."""
    return OUR_CASES[case]() if case in OUR_CASES else SPECIAL[case]()


def our_http(case: str, encode: Callable[[CloudEvent], tuple[dict[str, str], bytes]]) -> Command:
    def build() -> dict[str, Any]:
        headers, payload = encode(our_event(case))
        return decode_command("http", headers, payload)()

    return build


def our_batch(*cases: str) -> Command:
    def build() -> dict[str, Any]:
        headers, payload = http.encode_batch([our_event(case) for case in cases])
        return decode_command("http", headers, payload)()

    return build


OUR_ENCODERS = {
    "http-binary": lambda case: our_http(case, http.encode_binary),
    "http-structured": lambda case: our_http(case, http.encode_structured),
    "http-batch": our_batch,
}
# Left out, with the test that shows why:
US_KNOWN_BUGS = {("http-structured", "create-bytes"): "test_js_structured_reads_binary_data_as_uint32array"}
US_TO_JS = [
    pytest.param(mode, case, command(f"us-to-js/{mode}/{case}", encoder(case)), id=f"{mode}-{case}")
    for mode, encoder in OUR_ENCODERS.items()
    for case in OUR_CASES
    if (mode, case) not in US_KNOWN_BUGS
]


@pytest.mark.parametrize(("mode", "case", "key"), US_TO_JS)
def test_our_event_decoded_by_js(js: Js, mode: str, case: str, key: str) -> None:
    (received,) = js.ok(key)["events"]
    binary = mode == "http-binary"
    assert js_view(received, as_strings=binary) == our_view(our_event(case), as_strings=binary)


MIXED = ["create-minimal", "create-json", "create-text", "create-bytes", "create-extensions"]
US_BATCH = command("us-to-js/http-batch/mixed", our_batch(*MIXED))


def test_our_batch_decoded_by_js(js: Js) -> None:
    received = js.ok(US_BATCH)["events"]
    assert [js_view(e, as_strings=False) for e in received] == [
        our_view(our_event(case), as_strings=False) for case in MIXED
    ]


# --- Kafka: the SDK writes datacontenttype twice ----------------------------------------------

KAFKA_TWICE = command(
    "js-kafka-twice",
    encode_command(
        "kafka", "binary", js_event({"type": "t.t", "source": SOURCE, "datacontenttype": "application/json"}, "json", 1)
    ),
)


def test_js_kafka_binary_writes_datacontenttype_twice(js: Js) -> None:
    """Kafka §3.2.1 maps datacontenttype to content-type only; the SDK also writes ce_datacontenttype."""
    result = js.ok(KAFKA_TWICE)
    assert result["headers"]["content-type"] == result["headers"]["ce_datacontenttype"] == "application/json"
    ours = ours_from_kafka(result)
    assert ours.datacontenttype == "application/json"
    assert "datacontenttype" not in ours.extensions
    assert ours.data == 1


# --- SDK behaviour that breaks the spec, next to ours -----------------------------------------

INVENTED_TYPE = command("js-invented-type", encode_command("http", "binary", JS_CASES["minimal"]))


def test_js_binary_invents_a_datacontenttype(js: Js) -> None:
    """HTTP §3.1.1: Content-Type maps to datacontenttype; for an event without one the SDK still sends
    ``application/json; charset=utf-8``, and no body at all, which its own http transport cannot write."""
    result = js.ok(INVENTED_TYPE)
    (sent,) = result["events"]
    assert "datacontenttype" not in sent["attributes"]
    assert result["headers"]["content-type"] == "application/json; charset=utf-8"
    assert result["body_type"] == "undefined"
    assert result["wire_error"] is not None
    # We read what was sent, as §3.1.1 says: the header becomes datacontenttype; an empty body is no data.
    (ours,) = ours_from_http(result).events
    assert (ours.datacontenttype, ours.data) == ("application/json; charset=utf-8", None)


UNQUOTED = command(
    "js-unquoted-string",
    encode_command("http", "binary", js_event({"type": "t.t", "source": SOURCE}, "text", "hello")),
)


def test_js_binary_sends_string_data_as_json_unquoted(js: Js) -> None:
    """A str with no datacontenttype goes out as ``hello`` under Content-Type application/json (RFC 8259)."""
    result = js.ok(UNQUOTED)
    assert result["headers"]["content-type"] == "application/json; charset=utf-8"
    assert body(result) == b"hello"
    with pytest.raises(CloudEventError) as raised:
        ours_from_http(result)
    assert [f.attribute for f in raised.value.failures] == ["data"]


RAW_HEADERS = {
    "latin-1": command(
        "js-raw-latin1",
        encode_command(
            "http", "binary", js_event({"type": "t.t", "source": SOURCE, "subject": "café 100%"}, "json", 1)
        ),
    ),
    "beyond-latin-1": command(
        "js-raw-emoji",
        encode_command("http", "binary", js_event({"type": "t.t", "source": SOURCE, "subject": "☕ break"}, "json", 1)),
    ),
}


def test_js_binary_headers_are_not_percent_encoded(js: Js) -> None:
    """HTTP §3.1.3.2: space, '%' and non-ASCII MUST be percent-encoded; the SDK writes values raw."""
    result = js.ok(RAW_HEADERS["latin-1"])
    assert result["headers"]["ce-subject"] == "café 100%"  # goes out as Latin-1 bytes
    with pytest.raises(CloudEventError) as raised:  # a lone '%' is not an escape: we refuse to guess
        ours_from_http(result)
    assert [f.attribute for f in raised.value.failures] == ["subject"]
    # Outside Latin-1, Node refuses to send the header at all.
    refused = js(RAW_HEADERS["beyond-latin-1"])
    assert not refused["ok"]
    assert "ERR_INVALID_CHAR" in refused["error"]
    # Ours, for the same values:
    event = CloudEvent.create(type="t.t", source=SOURCE, subject="café 100%")
    assert http.encode_binary(event)[0]["ce-subject"] == "caf%C3%A9%20100%25"


SPECIAL["percent"] = lambda: CloudEvent.create(type="t.t", source=SOURCE, subject="café 100%")
NOT_DECODED = command("js-not-percent-decoded", our_http("percent", http.encode_binary))


def test_js_binary_does_not_percent_decode(js: Js) -> None:
    """HTTP §3.1.3.2: a receiver MUST percent-decode header values; the SDK hands them over as sent."""
    (received,) = js.ok(NOT_DECODED)["events"]
    assert received["attributes"]["subject"] == "caf%C3%A9%20100%25"
    headers, payload = http.encode_binary(our_event("percent"))
    assert http.decode(headers, payload).events[0].subject == "café 100%"


UINT32 = command("js-uint32", our_http("create-bytes", http.encode_structured))


def test_js_structured_reads_binary_data_as_uint32array(js: Js) -> None:
    """json-format.md#31: data_base64 carries Binary data; the SDK decodes it into a Uint32Array,
    one 32-bit element per byte, so the event's data is four times the bytes that were sent."""
    sent = our_event("create-bytes").data
    (received,) = js.ok(UINT32)["events"]
    assert received["data"]["class"] == "Uint32Array"
    assert len(base64.b64decode(received["data"]["base64"])) == 4 * len(sent)
    assert base64.b64decode(received["data_base64"]) == sent  # its own Base64 of the data is right
    _, payload = http.encode_structured(our_event("create-bytes"))
    assert base64.b64decode(json.loads(payload)["data_base64"]) == sent


FALSY: dict[str, Callable[[], CloudEvent]] = {
    "zero": lambda: CloudEvent.create(type="t.t", source=SOURCE, id="zero", data=0),
    "false": lambda: CloudEvent.create(type="t.t", source=SOURCE, id="false", data=False),
    "empty-string": lambda: CloudEvent.create(type="t.t", source=SOURCE, id="empty", data=""),
}
SPECIAL.update({f"falsy-{name}": build for name, build in FALSY.items()})
FALSY_KEYS = {name: command(f"js-falsy/{name}", our_http(f"falsy-{name}", http.encode_structured)) for name in FALSY}


@pytest.mark.parametrize("name", FALSY)
def test_js_structured_drops_falsy_data(js: Js, name: str) -> None:
    """json-format.md#31: ``"data": 0`` (or false, or "") is data; the SDK's structured reader drops it."""
    event = our_event(f"falsy-{name}")
    (received,) = js.ok(FALSY_KEYS[name])["events"]
    assert received["data"] == {"kind": "none"}
    headers, payload = http.encode_structured(event)
    assert json.loads(payload)["data"] == event.data
    assert http.decode(headers, payload).events[0].data == event.data


SPECIAL["plus-json"] = lambda: CloudEvent.create(
    type="t.t", source=SOURCE, datacontenttype="application/vnd.example+json", data=[1, {"a": None}]
)
PLUS_JSON = command("js-plus-json", our_http("plus-json", http.encode_binary))


def test_js_binary_reads_only_plain_application_json_as_json(js: Js) -> None:
    """A ``+json`` media type is JSON (RFC 6839 §3.1, json-format.md#31); the SDK leaves its body a string."""
    (received,) = js.ok(PLUS_JSON)["events"]
    assert received["data"] == {"kind": "string", "value": '[1,{"a":null}]'}
    headers, payload = http.encode_binary(our_event("plus-json"))
    assert http.decode(headers, payload).events[0].data == [1, {"a": None}]


INVALID = b'{"specversion": "1.0", "id": "bad", "type": "t.t", "time": "lunchtime"}'
ACCEPTS_INVALID = command(
    "js-accepts-invalid", decode_command("http", {"content-type": "application/cloudevents+json"}, INVALID)
)


def test_js_accepts_an_invalid_structured_event(js: Js) -> None:
    """spec.md#source and #time: no source and a time that is no timestamp; the SDK takes the event and
    puts the current time in place of "lunchtime". We reject it, naming both attributes."""
    before = datetime.now(UTC)
    (received,) = js.ok(ACCEPTS_INVALID)["events"]
    assert "source" not in received["attributes"]
    assert instant(received["attributes"]["time"]) >= before - timedelta(seconds=60)
    with pytest.raises(CloudEventError) as raised:
        http.decode({"content-type": "application/cloudevents+json"}, INVALID)
    assert {f.attribute for f in raised.value.failures} == {"source", "time"}


SPECIAL["no-time"] = lambda: CloudEvent(specversion="1.0", id="no-time", source=SOURCE, type="t.t")
NO_TIME = {
    mode: command(f"js-no-time/{mode}", our_http("no-time", encode))
    for mode, encode in (("http-binary", http.encode_binary), ("http-structured", http.encode_structured))
}


@pytest.mark.parametrize("mode", NO_TIME)
def test_js_invents_a_time_the_event_does_not_have(js: Js, mode: str) -> None:
    """spec.md#time is OPTIONAL; the SDK's CloudEvent constructor fills in the current time."""
    (received,) = js.ok(NO_TIME[mode])["events"]
    assert "time" in received["attributes"]
    encode = http.encode_binary if mode == "http-binary" else http.encode_structured
    assert http.decode(*encode(our_event("no-time"))).events[0].time is None
