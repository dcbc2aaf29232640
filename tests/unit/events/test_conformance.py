"""The official CloudEvents conformance data, every case, against the events kit.

The data lives in ``../shared/conformance/`` (see its PROVENANCE.md) and is found by
``tests/conftest.py``. It is read at collection time; when it is absent each test gets
one placeholder case that skips on a laptop and fails under ``CI=true``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from eventaudit.events import CloudEvent, CloudEventError
from eventaudit.events.bindings import http, kafka
from eventaudit.events.formats import json as json_format
from eventaudit.events.types import canonical_string
from tests.conftest import CONFORMANCE, conformance_file, require

VALID_EVENTS = "format/json/valid-events.json"
INVALID_EVENTS = "format/json/invalid-events.json"
VALID_BATCHES = "format/json/valid-batches.json"
INVALID_BATCHES = "format/json/invalid-batches.json"
HTTP_FEATURE = "features/http-protocol-binding.feature"
KAFKA_FEATURE = "features/kafka-protocol-binding.feature"
YAML_EVENTS = "yaml/v1.0/v1_minimum.yaml"

#: Cases per file at the upstream commits PROVENANCE.md pins.
UPSTREAM_COUNTS = {
    VALID_EVENTS: 10,
    INVALID_EVENTS: 25,
    VALID_BATCHES: 5,
    INVALID_BATCHES: 3,
    HTTP_FEATURE: 4,
    KAFKA_FEATURE: 3,
    YAML_EVENTS: 6,
}


# --- loading: parametrize at collection, never crash when the data is absent ------------------


@dataclass(frozen=True)
class Missing:
    """Stands in for the cases of a data file that is not there."""

    relative: str


def _placeholder(relative: str) -> list[Any]:
    return [pytest.param(Missing(relative), id=f"missing:{relative}")]


def _unwrap(case: Any) -> Any:
    """The case itself; skips (fails in CI) for the placeholder of absent data."""
    if isinstance(case, Missing):
        require(False, f"CloudEvents conformance data not found: {CONFORMANCE / case.relative}")
    return case


def _path(relative: str) -> Path | None:
    path = CONFORMANCE / relative
    return path if path.is_file() else None


def _json_cases(relative: str) -> list[Any]:
    path = _path(relative)
    if path is None:
        return _placeholder(relative)
    tests = json.loads(path.read_text(encoding="utf-8"))["tests"]
    return [pytest.param(case, id=case["id"]) for case in tests]


# --- Gherkin: just enough of it for the two binding features --------------------------------


@dataclass
class Step:
    text: str
    docstring: str | None = None
    table: list[list[str]] | None = None


@dataclass
class Scenario:
    name: str
    steps: list[Step] = field(default_factory=list)
    examples: list[dict[str, str]] = field(default_factory=list)
    outline: bool = False

    def expand(self) -> list[Scenario]:
        """The concrete scenarios: one per Examples row for an outline, else itself."""
        if not self.outline:
            return [self]
        if not self.examples:
            raise ValueError(f"Scenario Outline {self.name!r} has no Examples")
        return [self._substitute(row) for row in self.examples]

    def _substitute(self, row: dict[str, str]) -> Scenario:
        def sub(text: str) -> str:
            return re.sub(r"<([^<>]+)>", lambda m: row[m[1]] if m[1] in row else m[0], text)

        steps = [
            Step(
                sub(step.text),
                None if step.docstring is None else sub(step.docstring),
                None if step.table is None else [[sub(cell) for cell in cells] for cells in step.table],
            )
            for step in self.steps
        ]
        return Scenario(sub(self.name), steps)


_STEP = re.compile(r"(?:Given|When|Then|And|But)\s+(.*)")


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def parse_feature(text: str) -> list[Scenario]:
    """The scenarios of a feature file, outlines expanded; Background steps are dropped."""
    lines = text.splitlines()
    scenarios: list[Scenario] = []
    current: Scenario | None = None
    in_examples = False
    header: list[str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        i += 1
        if not stripped or stripped.startswith(("#", "@")):
            continue
        if stripped.startswith('"""'):
            indent = len(line) - len(line.lstrip())
            body: list[str] = []
            while lines[i].strip() != '"""':
                body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i].lstrip())
                i += 1
            i += 1
            if current is not None and current.steps:
                current.steps[-1].docstring = "\n".join(body)
            continue
        if stripped.startswith("|"):
            if current is None:
                continue
            if in_examples:
                if header is None:
                    header = _cells(stripped)
                else:
                    current.examples.append(dict(zip(header, _cells(stripped), strict=True)))
            elif current.steps:
                step = current.steps[-1]
                step.table = [*(step.table or []), _cells(stripped)]
            continue
        if stripped.startswith(("Scenario Outline:", "Scenario Template:", "Scenario:", "Example:")):
            keyword, _, name = stripped.partition(":")
            current = Scenario(name.strip(), outline=keyword in ("Scenario Outline", "Scenario Template"))
            scenarios.append(current)
            in_examples, header = False, None
            continue
        if stripped.startswith(("Examples:", "Scenarios:")):
            in_examples, header = True, None
            continue
        if stripped.startswith(("Background:", "Feature:")):
            current, in_examples = None, False
            continue
        match = _STEP.fullmatch(stripped)
        if match and current is not None:
            current.steps.append(Step(match[1]))
    return [concrete for scenario in scenarios for concrete in scenario.expand()]


def _feature_cases(relative: str) -> list[Any]:
    path = _path(relative)
    if path is None:
        return _placeholder(relative)
    return [pytest.param(s, id=s.name) for s in parse_feature(path.read_text(encoding="utf-8"))]


def _table_dict(table: list[list[str]] | None) -> dict[str, str]:
    assert table is not None
    assert table[0] == ["key", "value"], table
    return {row[0]: row[1] for row in table[1:]}


@dataclass
class Expectation:
    attributes: dict[str, str]
    data: Any


def _expectation(steps: list[Step]) -> Expectation:
    attributes: dict[str, str] | None = None
    data: Any = None
    seen_data = False
    for step in steps:
        if step.text == "the attributes are:":
            attributes = _table_dict(step.table)
        elif step.text == "the data is equal to the following JSON:":
            assert step.docstring is not None
            data, seen_data = json.loads(step.docstring), True
    assert attributes is not None, "scenario lacks its attributes step"
    assert seen_data, "scenario lacks its data step"
    return Expectation(attributes, data)


def parse_http_request(text: str) -> tuple[list[tuple[str, str]], bytes]:
    """An HTTP/1.1 request as written in the feature: (header pairs, body)."""
    head, _, body = text.partition("\n\n")
    request_line, *header_lines = head.split("\n")
    assert re.fullmatch(r"[A-Z]+ \S+ HTTP/1\.1", request_line), request_line
    headers = []
    for line in header_lines:
        name, sep, value = line.partition(":")
        assert sep, line
        headers.append((name.strip(), value.strip()))
    return headers, body.encode("utf-8")


def _http_scenario(scenario: Scenario) -> tuple[list[tuple[str, str]], bytes, Expectation]:
    request: tuple[list[tuple[str, str]], bytes] | None = None
    for step in scenario.steps:
        if step.text == "an HTTP request":
            assert step.docstring is not None
            request = parse_http_request(step.docstring)
        elif step.text not in (
            "parsed as HTTP request",
            "the attributes are:",
            "the data is equal to the following JSON:",
        ):
            raise AssertionError(f"unknown step {step.text!r}: teach the test module about it")
    assert request is not None
    return request[0], request[1], _expectation(scenario.steps)


def _kafka_scenario(scenario: Scenario) -> tuple[list[tuple[str, bytes]], bytes, Expectation]:
    value: bytes | None = None
    headers: list[tuple[str, bytes]] | None = None
    for step in scenario.steps:
        if step.text == "a Kafka message with payload:":
            assert step.docstring is not None
            value = step.docstring.encode("utf-8")
        elif step.text == "Kafka headers:":
            headers = [(k, v.encode("utf-8")) for k, v in _table_dict(step.table).items()]
        elif step.text not in (
            "parsed as Kafka message",
            "the attributes are:",
            "the data is equal to the following JSON:",
        ):
            raise AssertionError(f"unknown step {step.text!r}: teach the test module about it")
    assert value is not None
    assert headers is not None
    return headers, value, _expectation(scenario.steps)


def _yaml_cases(relative: str) -> list[Any]:
    path = _path(relative)
    if path is None:
        return _placeholder(relative)
    docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    return [pytest.param(doc, id=str(doc["ContextAttributes"]["id"])) for doc in docs]


VALID_EVENT_CASES = _json_cases(VALID_EVENTS)
INVALID_EVENT_CASES = _json_cases(INVALID_EVENTS)
VALID_BATCH_CASES = _json_cases(VALID_BATCHES)
INVALID_BATCH_CASES = _json_cases(INVALID_BATCHES)
HTTP_CASES = _feature_cases(HTTP_FEATURE)
KAFKA_CASES = _feature_cases(KAFKA_FEATURE)
YAML_CASES = _yaml_cases(YAML_EVENTS)

LOADED = {
    VALID_EVENTS: VALID_EVENT_CASES,
    INVALID_EVENTS: INVALID_EVENT_CASES,
    VALID_BATCHES: VALID_BATCH_CASES,
    INVALID_BATCHES: INVALID_BATCH_CASES,
    HTTP_FEATURE: HTTP_CASES,
    KAFKA_FEATURE: KAFKA_CASES,
    YAML_EVENTS: YAML_CASES,
}


# --- counting the cases in each file, independently of the loaders above ---------------------


def _count_in_file(relative: str, text: str) -> int:
    if relative.endswith(".json"):
        return len(json.loads(text)["tests"])
    if relative.endswith(".yaml"):
        return len(re.findall(r"^ContextAttributes:", text, flags=re.MULTILINE))
    count = 0
    for block in re.split(r"^\s*Scenario", text, flags=re.MULTILINE)[1:]:
        if block.startswith((" Outline:", " Template:")):
            examples = block.split("Examples:", 1)[1]
            count += len(re.findall(r"^\s*\|", examples, flags=re.MULTILINE)) - 1  # minus the header row
        else:
            count += 1
    return count


@pytest.mark.parametrize("relative", list(LOADED))
def test_every_case_of_the_file_is_collected(relative: str) -> None:
    text = conformance_file(relative).read_text(encoding="utf-8")
    in_file = _count_in_file(relative, text)
    assert len(LOADED[relative]) == in_file
    assert in_file == UPSTREAM_COUNTS[relative], "the data differs from the upstream commit PROVENANCE.md pins"
    assert not any(isinstance(p.values[0], Missing) for p in LOADED[relative])


# --- helpers to compare an event with the JSON it came from ----------------------------------


def _instant(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware datetime, parsed here, independently of the kit."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(?:\.(\d+))?([Zz]|[+-]\d\d:\d\d)", text)
    assert match, text
    fraction = (match[2] or "0")[:6].ljust(6, "0")
    offset = "+00:00" if match[3] in "Zz" else match[3]
    return datetime.fromisoformat(f"{match[1]}.{fraction}{offset}")


def _expected_attributes(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None and k not in ("data", "data_base64")}


def assert_event_matches(event: CloudEvent, obj: dict[str, Any]) -> None:
    """``event`` holds exactly the attributes and data of the JSON object ``obj``."""
    expected = _expected_attributes(obj)
    actual = event.attributes()
    assert set(actual) == set(expected)
    for name, value in expected.items():
        if name == "time":
            assert event.timestamp() == _instant(value)
        else:
            assert actual[name] == value, name
            assert type(actual[name]) is type(value), name
    if "data_base64" in obj and obj["data_base64"] is not None:
        assert event.data == base64.b64decode(obj["data_base64"])
    else:
        assert event.data == obj.get("data")


# --- format/json: events -------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID_EVENT_CASES)
def test_valid_event_decodes(case: Any) -> None:
    case = _unwrap(case)
    event = json_format.decode(json.dumps(case["event"]).encode("utf-8"))
    assert_event_matches(event, case["event"])
    again = json_format.decode(json_format.encode(event))
    assert again == event
    assert_event_matches(again, case["event"])


def test_all_extension_types_keep_their_json_values() -> None:
    cases = {p.values[0]["id"]: p.values[0] for p in VALID_EVENT_CASES if not isinstance(p.values[0], Missing)}
    require("validAllExtensionTypes" in cases, "conformance case validAllExtensionTypes not loaded")
    event = json_format.decode(json.dumps(cases["validAllExtensionTypes"]["event"]).encode())
    assert dict(event.extensions) == {
        "extinteger": 10,
        "extboolean": True,
        "extstring": "text",
        "exturi": "https://cloudevents.io",
        "exturiref": "//authority/path",
        "exttimestamp": "2023-03-31T15:12:00Z",
        "extbinary": "TWE=",
    }
    assert type(event.extensions["extinteger"]) is int
    assert type(event.extensions["extboolean"]) is bool


#: The attribute each invalid case gets wrong (a set where either name is a fair report).
INVALID_EVENT_ATTRIBUTE: dict[str, frozenset[str]] = {
    "invalidNoSpecVersion": frozenset({"specversion"}),
    "invalidNoId": frozenset({"id"}),
    "invalidNoType": frozenset({"type"}),
    "invalidNoSource": frozenset({"source"}),
    "invalidTimeGarbage": frozenset({"time"}),
    "invalidTimeToMinute": frozenset({"time"}),
    "invalidTimeOffsetX": frozenset({"time"}),
    "invalidTimeOffsetOutOfRange": frozenset({"time"}),
    "invalidTimeOffsetNonInteger": frozenset({"time"}),
    "invalidTimeOffsetHourOnly": frozenset({"time"}),
    "invalidEmptyId": frozenset({"id"}),
    "invalidEmptyType": frozenset({"type"}),
    "invalidEmptySource": frozenset({"source"}),
    "invalidEmptySpecVersion": frozenset({"specversion"}),
    "invalidUnknownSpecVersion": frozenset({"specversion"}),
    "invalidNonRfc2046DataContentType": frozenset({"datacontenttype"}),
    "invalidEmptyDataContentType": frozenset({"datacontenttype"}),
    "invalidEmptyDataSchema": frozenset({"dataschema"}),
    "invalidEmptySubject": frozenset({"subject"}),
    "invalidNumericId": frozenset({"id"}),
    "invalidObjectId": frozenset({"id"}),
    "invalidCapitalizedExtension": frozenset({"MyExtension"}),
    "invalidPunctuatedExtension": frozenset({"my.extension"}),
    "invalidNonIntegerExtensionValue": frozenset({"my.extension"}),
    "invalidBothDataAndDataBase64": frozenset({"data", "data_base64"}),
}


def test_every_invalid_event_has_an_expected_attribute() -> None:
    ids = {p.values[0]["id"] for p in INVALID_EVENT_CASES if not isinstance(p.values[0], Missing)}
    require(bool(ids), f"conformance data {INVALID_EVENTS} not loaded")
    assert ids == set(INVALID_EVENT_ATTRIBUTE)


@pytest.mark.parametrize("case", INVALID_EVENT_CASES)
def test_invalid_event_is_rejected_naming_the_attribute(case: Any) -> None:
    case = _unwrap(case)
    with pytest.raises(CloudEventError) as caught:
        json_format.decode(json.dumps(case["event"]).encode("utf-8"))
    named = {f.attribute for f in caught.value.failures}
    assert named, "no failure listed"
    assert named <= INVALID_EVENT_ATTRIBUTE[case["id"]], [str(f) for f in caught.value.failures]
    assert all(f.batch_index is None for f in caught.value.failures)


# --- format/json: batches ------------------------------------------------------------------


@pytest.mark.parametrize("case", VALID_BATCH_CASES)
def test_valid_batch_decodes(case: Any) -> None:
    case = _unwrap(case)
    events = json_format.decode_batch(json.dumps(case["batch"]).encode("utf-8"))
    assert len(events) == len(case["batch"])
    for event, obj in zip(events, case["batch"], strict=True):
        assert_event_matches(event, obj)
    assert json_format.decode_batch(json_format.encode_batch(events)) == events


#: The position of the failing member in each invalid batch.
INVALID_BATCH_INDEX = {
    "invalidBatchMixedSpecVersions": 1,
    "invalidBatchContainingInvalidCloudEvent": 0,
    "invalidBatchContainingNonObject": 0,
}


def test_every_invalid_batch_has_an_expected_index() -> None:
    ids = {p.values[0]["id"] for p in INVALID_BATCH_CASES if not isinstance(p.values[0], Missing)}
    require(bool(ids), f"conformance data {INVALID_BATCHES} not loaded")
    assert ids == set(INVALID_BATCH_INDEX)


@pytest.mark.parametrize("case", INVALID_BATCH_CASES)
def test_invalid_batch_is_rejected_at_the_failing_member(case: Any) -> None:
    case = _unwrap(case)
    with pytest.raises(CloudEventError) as caught:
        json_format.decode_batch(json.dumps(case["batch"]).encode("utf-8"))
    assert {f.batch_index for f in caught.value.failures} == {INVALID_BATCH_INDEX[case["id"]]}


# --- features: HTTP and Kafka bindings ------------------------------------------------------


def _assert_attributes(event: CloudEvent, expected: dict[str, str]) -> None:
    assert {name: canonical_string(value) for name, value in event.attributes().items()} == expected


@pytest.mark.parametrize("scenario", HTTP_CASES)
def test_http_feature(scenario: Any) -> None:
    scenario = _unwrap(scenario)
    headers, body, expect = _http_scenario(scenario)
    length = {k.lower(): v for k, v in headers}.get("content-length")
    decoded = http.decode(headers, body)
    expected_mode = http.Mode.BINARY if scenario.name.startswith("Binary") else http.Mode.STRUCTURED
    assert scenario.name.startswith(("Binary", "Structured")), scenario.name
    assert decoded.mode is expected_mode
    assert len(decoded.events) == 1
    event = decoded.events[0]
    _assert_attributes(event, expect.attributes)
    assert event.data == expect.data
    assert length is not None
    assert int(length) == len(body)  # the parser kept the body byte for byte


@pytest.mark.parametrize("scenario", KAFKA_CASES)
def test_kafka_feature(scenario: Any) -> None:
    scenario = _unwrap(scenario)
    headers, value, expect = _kafka_scenario(scenario)
    event = kafka.decode(None, headers, value)
    _assert_attributes(event, expect.attributes)
    assert event.data == expect.data


def test_gherkin_parser_expands_outlines() -> None:
    text = '''Feature: f
    Scenario Outline: S (<x>)
    Given an HTTP request
        """
        A <x>
          indented
        """
    Then the attributes are:
        | key | value |
        |  k  | <x>   |
    Examples:
    | x |
    | 1 |
    | 2 |

    Scenario: plain
    Given nothing
'''
    scenarios = parse_feature(text)
    assert [s.name for s in scenarios] == ["S (1)", "S (2)", "plain"]
    assert scenarios[1].steps[0].docstring == "A 2\n  indented"
    assert scenarios[1].steps[1].table == [["key", "value"], ["k", "2"]]
    assert scenarios[2].steps[0].text == "nothing"


# --- yaml: the events the upstream CLI sends in HTTP binary mode ---------------------------


def _header_value(value: str) -> str:
    # CloudEvents HTTP binding §3.1.3.2: percent-encode space, '"', '%' and all outside U+0021-U+007E.
    return quote(value, safe="".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%'))


def _is_json(content_type: str) -> bool:
    essence = content_type.split(";", 1)[0].strip().lower()
    return essence.endswith(("/json", "+json"))


@pytest.mark.parametrize("doc", YAML_CASES)
def test_yaml_event_sent_in_http_binary_mode(doc: Any) -> None:
    doc = _unwrap(doc)
    attributes = {name: str(value) for name, value in doc["ContextAttributes"].items()}
    assert attributes["specversion"] == "1.0"  # YAML reads the unquoted 1.0 as a float
    content_type = attributes.pop("datacontenttype")
    headers = [("Content-Type", content_type)] + [(f"ce-{k}", _header_value(v)) for k, v in attributes.items()]
    body = doc["Data"].encode("utf-8")
    decoded = http.decode(headers, body)
    assert decoded.mode is http.Mode.BINARY
    (event,) = decoded.events
    assert event.attributes() == {**attributes, "datacontenttype": content_type}
    if _is_json(content_type):
        assert event.data == json.loads(doc["Data"])
    else:
        assert event.data == doc["Data"]  # the text as sent, trailing newline of the block scalar too
        assert event.data.endswith("\n")
