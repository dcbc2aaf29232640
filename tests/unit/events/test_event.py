"""Tests of ``eventaudit.events.event``: the CloudEvent value (CloudEvents 1.0.2 spec.md)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any

import pytest

from eventaudit.events import SPECVERSION, CloudEvent, CloudEventError
from eventaudit.events.event import CORE_ATTRIBUTES, RESERVED_NAMES

REQUIRED = {"specversion": "1.0", "id": "e-1", "source": "/sensors/7", "type": "com.example.reading"}


def make(**changes: Any) -> CloudEvent:
    return CloudEvent(**{**REQUIRED, **changes})


def failures_of(**changes: Any) -> CloudEventError:
    with pytest.raises(CloudEventError) as info:
        make(**changes)
    return info.value


# --------------------------------------------------------------------------------------------------------------------
# CloudEvent.create: the producer path fills what a producer may leave out.
# --------------------------------------------------------------------------------------------------------------------


def test_create_fills_id_time_and_specversion() -> None:
    before = datetime.now(UTC)
    event = CloudEvent.create(type="com.example.made", source="/producer")
    after = datetime.now(UTC)

    assert event.specversion == SPECVERSION == "1.0"
    assert str(uuid.UUID(event.id)) == event.id
    assert event.time is not None
    assert event.time.endswith("Z")
    stamp = event.timestamp()
    assert stamp is not None
    assert stamp.utcoffset() == timedelta(0)
    assert before - timedelta(microseconds=1) <= stamp <= after
    assert event.datacontenttype is None
    assert event.data is None


def test_create_gives_each_event_its_own_id() -> None:
    ids = {CloudEvent.create(type="t", source="/s").id for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"\x00\x01", "application/octet-stream"),
        (b"", "application/octet-stream"),
        ("hello", "text/plain; charset=utf-8"),
        ({"a": 1}, "application/json"),
        ([1, 2], "application/json"),
        (7, "application/json"),
        (1.5, "application/json"),
        (True, "application/json"),
    ],
)
def test_create_picks_a_content_type_for_the_data(data: Any, content_type: str) -> None:
    event = CloudEvent.create(type="t", source="/s", data=data)
    assert event.datacontenttype == content_type
    assert event.data == data


def test_create_keeps_the_given_values() -> None:
    when = datetime(2024, 2, 29, 12, 30, 15, 250000, tzinfo=timezone(timedelta(hours=-5)))
    event = CloudEvent.create(
        type="t",
        source="/s",
        id="fixed",
        time=when,
        subject="sub",
        data="<a/>",
        datacontenttype="application/xml",
        dataschema="https://example.com/schema",
        extensions={"traceparent": "00-abc", "seen": datetime(2024, 1, 1, tzinfo=UTC), "n": 3},
    )
    assert event.id == "fixed"
    assert event.time == "2024-02-29T12:30:15.250000-05:00"
    assert event.timestamp() == when
    assert event.datacontenttype == "application/xml"
    assert event.extensions == {"traceparent": "00-abc", "seen": "2024-01-01T00:00:00Z", "n": 3}


def test_create_refuses_a_naive_datetime() -> None:
    with pytest.raises(CloudEventError) as info:
        CloudEvent.create(type="t", source="/s", time=datetime(2024, 1, 1))
    assert [f.attribute for f in info.value.failures] == ["time"]


def test_create_still_validates() -> None:
    with pytest.raises(CloudEventError) as info:
        CloudEvent.create(type="", source="not a uri")
    assert {f.attribute for f in info.value.failures} == {"type", "source"}


# --------------------------------------------------------------------------------------------------------------------
# The strict constructor invents nothing.
# --------------------------------------------------------------------------------------------------------------------


def test_strict_constructor_invents_nothing() -> None:
    event = make(data={"a": 1})
    assert event.id == "e-1"
    assert event.time is None
    assert event.datacontenttype is None
    assert event.subject is None
    assert event.dataschema is None
    assert dict(event.extensions) == {}


@pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
def test_strict_constructor_without_a_required_attribute_names_it(name: str) -> None:
    # spec.md#required-attributes; the constructor "accepts anything and checks it": a CloudEventError, not TypeError.
    kwargs = {k: v for k, v in REQUIRED.items() if k != name}
    with pytest.raises(CloudEventError) as info:
        CloudEvent(**kwargs)
    assert [f.attribute for f in info.value.failures] == [name]
    assert info.value.failures[0].section == f"spec.md#{name}"


@pytest.mark.parametrize("name", ["id", "source", "type", "specversion"])
def test_a_required_attribute_set_to_none_is_missing(name: str) -> None:
    error = failures_of(**{name: None})
    assert [(f.attribute, f.rule, f.section) for f in error.failures] == [(name, "is required", f"spec.md#{name}")]


# --------------------------------------------------------------------------------------------------------------------
# One rule per row: the attribute, the spec section.
# --------------------------------------------------------------------------------------------------------------------

BROKEN = [
    ({"specversion": "0.3"}, "specversion", "spec.md#specversion"),
    ({"specversion": 1.0}, "specversion", "spec.md#specversion"),
    ({"id": ""}, "id", "spec.md#id"),
    ({"id": 5}, "id", "spec.md#id"),
    ({"id": "a\x00b"}, "id", "spec.md#type-system"),
    ({"id": "\ud800"}, "id", "spec.md#type-system"),
    ({"type": ""}, "type", "spec.md#type"),
    ({"type": "\ufffe"}, "type", "spec.md#type-system"),
    ({"source": ""}, "source", "spec.md#source"),
    ({"source": "a b"}, "source", "spec.md#source-1"),
    ({"source": "urn:a b"}, "source", "spec.md#source-1"),
    ({"datacontenttype": "json"}, "datacontenttype", "spec.md#datacontenttype"),
    ({"datacontenttype": ""}, "datacontenttype", "spec.md#datacontenttype"),
    ({"dataschema": "/relative"}, "dataschema", "spec.md#dataschema"),
    ({"dataschema": "https://h/s#frag"}, "dataschema", "spec.md#dataschema"),
    ({"subject": ""}, "subject", "spec.md#subject"),
    ({"subject": "\x85"}, "subject", "spec.md#type-system"),
    ({"time": "2023-02-29T00:00:00Z"}, "time", "spec.md#time"),
    ({"time": "yesterday"}, "time", "spec.md#time"),
    ({"time": datetime(2024, 1, 1, tzinfo=UTC)}, "time", "spec.md#type-system"),
    ({"extensions": {"Bad": "x"}}, "Bad", "spec.md#naming-conventions"),
    ({"extensions": {"a-b": "x"}}, "a-b", "spec.md#naming-conventions"),
    ({"extensions": {"data": "x"}}, "data", "spec.md#extension-context-attributes"),
    ({"extensions": {"data_base64": "x"}}, "data_base64", "spec.md#naming-conventions"),
    ({"extensions": {"subject": "x"}}, "subject", "spec.md#extension-context-attributes"),
    ({"extensions": {"big": 2**31}}, "big", "spec.md#type-system"),
    ({"extensions": {"small": -(2**31) - 1}}, "small", "spec.md#type-system"),
    ({"extensions": {"f": 1.5}}, "f", "spec.md#type-system"),
    ({"extensions": {"n": None}}, "n", "spec.md#type-system"),
    ({"extensions": {"l": ["x"]}}, "l", "spec.md#type-system"),
    ({"extensions": {"ctl": "a\nb"}}, "ctl", "spec.md#type-system"),
    ({"data": {1, 2}}, "data", "spec.md#event-data"),
    ({"data": object()}, "data", "spec.md#event-data"),
]


@pytest.mark.parametrize(("changes", "attribute", "section"), BROKEN)
def test_a_broken_rule_names_attribute_rule_and_section(changes: dict[str, Any], attribute: str, section: str) -> None:
    error = failures_of(**changes)
    assert len(error.failures) == 1, error.failures
    failure = error.failures[0]
    assert failure.attribute == attribute
    assert failure.rule
    assert failure.section == section
    assert failure.batch_index is None
    assert attribute in str(error)
    assert section in str(error)


def test_every_failure_is_listed_at_once() -> None:
    error = failures_of(specversion="0.3", id="", source="not a uri", time="2023-02-29T00:00:00Z")
    assert len(error.failures) == 4
    assert {f.attribute for f in error.failures} == {"specversion", "id", "source", "time"}
    for failure in error.failures:
        assert failure.rule
        assert failure.section.startswith("spec.md#")
        assert str(failure) in str(error)


def test_failures_across_core_extensions_and_data_are_listed_together() -> None:
    error = failures_of(
        type="",
        subject="",
        dataschema="relative",
        datacontenttype="nope",
        extensions={"UPPER": "x", "ok": 2**40},
        data=object(),
    )
    assert {f.attribute for f in error.failures} == {
        "type",
        "subject",
        "dataschema",
        "datacontenttype",
        "UPPER",
        "ok",
        "data",
    }
    assert all(f.section.startswith("spec.md#") for f in error.failures)


def test_cloud_event_error_is_a_value_error() -> None:
    assert isinstance(failures_of(id=""), ValueError)


# --------------------------------------------------------------------------------------------------------------------
# Valid values at the edges.
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"id": "é 😀 \"quoted\" %41 'x'"},
        {"source": "urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66"},  # spec.md#source-1 example
        {"source": "mailto:cncf-wg-serverless@lists.cncf.io"},
        {"source": "1-555-123-4567"},
        {"source": "https://github.com/cloudevents"},
        {"time": "1990-12-31T23:59:60Z"},
        {"time": "2024-02-29t00:00:00.123456789z"},
        {"datacontenttype": "application/cloudevents+json; charset=utf-8"},
        {"datacontenttype": "text/plain", "data": None},  # spec.md#datacontenttype: MAY appear without data
        {"extensions": {"i": 2**31 - 1, "j": -(2**31), "b": True, "bin": b"\x00", "s": "x"}},
        {"extensions": {"empty": ""}},  # String is any sequence; only some core attributes must be non-empty
        {"data": b""},
        {"data": ""},
        {"data": 0},
        {"data": False},
        {"data": []},
        {"data": {"nested": [1, 2.5, None, True, "x"]}},
    ],
    ids=lambda changes: ",".join(f"{k}={v!r}"[:48] for k, v in changes.items()),
)
def test_valid_values(changes: dict[str, Any]) -> None:
    event = make(**changes)
    for name, value in changes.items():
        if name == "extensions":
            assert dict(event.extensions) == value
        else:
            assert getattr(event, name) == value


@pytest.mark.parametrize("name", ["datacontenttype", "dataschema", "subject", "time"])
def test_null_for_an_optional_attribute_means_absent(name: str) -> None:
    event = make(**{name: None})
    assert getattr(event, name) is None
    assert name not in event.attributes()


def test_null_data_means_no_data() -> None:
    event = make(data=None, datacontenttype="application/json")
    assert event.data is None


# --------------------------------------------------------------------------------------------------------------------
# Immutability.
# --------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*sorted(CORE_ATTRIBUTES), "extensions", "data"])
def test_attributes_cannot_be_set(name: str) -> None:
    event = make(extensions={"a": "1"}, data={"k": "v"})
    with pytest.raises(AttributeError):
        setattr(event, name, "changed")
    assert event == make(extensions={"a": "1"}, data={"k": "v"})


def test_attributes_cannot_be_deleted() -> None:
    event = make()
    with pytest.raises(AttributeError):
        del event.id
    assert event.id == "e-1"


def test_the_extensions_mapping_cannot_be_mutated() -> None:
    event = make(extensions={"a": "1"})
    with pytest.raises(TypeError):
        event.extensions["a"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        event.extensions["b"] = "2"  # type: ignore[index]
    with pytest.raises(TypeError):
        del event.extensions["a"]  # type: ignore[attr-defined]
    assert dict(event.extensions) == {"a": "1"}


def test_the_event_does_not_share_the_callers_dict() -> None:
    given = {"a": "1"}
    event = make(extensions=given)
    given["a"] = "\x00"
    given["b"] = "2"
    assert dict(event.extensions) == {"a": "1"}


def test_the_event_does_not_share_a_callers_read_only_view() -> None:
    # A MappingProxyType is read-only for the event but not for whoever holds the dict behind it.
    backing = {"a": "1"}
    event = make(extensions=MappingProxyType(backing))
    backing["a"] = "\x00"  # would now break spec.md#type-system without the event being checked again
    backing["Bad"] = "x"
    assert dict(event.extensions) == {"a": "1"}


def test_attributes_returns_a_copy() -> None:
    event = make(subject="s")
    attrs = event.attributes()
    attrs["subject"] = "changed"
    attrs["x"] = "y"
    assert event.subject == "s"
    assert "x" not in event.attributes()


# --------------------------------------------------------------------------------------------------------------------
# Extension names longer than 20 characters: a SHOULD NOT, so a warning, logged once per name.
# --------------------------------------------------------------------------------------------------------------------


def test_a_long_extension_name_is_valid_and_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    name = uuid.uuid4().hex  # 32 characters of [0-9a-f], new for this run
    with caplog.at_level(logging.WARNING, logger="eventaudit.events.event"):
        first = make(extensions={name: "x"})
        make(extensions={name: "y"})
        CloudEvent.create(type="t", source="/s", extensions={name: 1})
    assert dict(first.extensions) == {name: "x"}
    warnings = [r for r in caplog.records if name in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "20" in warnings[0].getMessage()


def test_a_twenty_character_name_is_not_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    name = uuid.uuid4().hex[:20]
    with caplog.at_level(logging.WARNING, logger="eventaudit.events.event"):
        make(extensions={name: "x"})
    assert [r for r in caplog.records if name in r.getMessage()] == []


def test_reserved_names_cover_the_core_and_the_json_data_members() -> None:
    assert CORE_ATTRIBUTES | {"data", "data_base64"} <= RESERVED_NAMES


# --------------------------------------------------------------------------------------------------------------------
# timestamp(): the time attribute as an aware datetime.
# --------------------------------------------------------------------------------------------------------------------

TIMESTAMPS = [
    ("2024-01-02T03:04:05Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2024-01-02t03:04:05z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2024-01-02T03:04:05.5Z", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
    ("2024-01-02T03:04:05.123456789Z", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
    ("2024-01-02T03:04:05.000000001Z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("2024-01-02T03:04:05.999999999+00:00", datetime(2024, 1, 2, 3, 4, 5, 999999, tzinfo=UTC)),
    (
        "2024-01-02T03:04:05.123456789+05:30",
        datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ),
    ("2024-01-02T03:04:05-23:59", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=23, minutes=59)))),
    ("2024-01-02T03:04:05+23:59", datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=23, minutes=59)))),
    ("2024-02-29T00:00:00.1234567-00:00", datetime(2024, 2, 29, 0, 0, 0, 123456, tzinfo=UTC)),
]


@pytest.mark.parametrize(("text", "expected"), TIMESTAMPS)
def test_timestamp_is_an_aware_datetime(text: str, expected: datetime) -> None:
    stamp = make(time=text).timestamp()
    assert stamp is not None
    assert stamp.tzinfo is not None
    assert stamp.utcoffset() == expected.utcoffset()
    assert stamp == expected
    assert stamp.microsecond == expected.microsecond


def test_timestamp_of_an_event_without_time_is_none() -> None:
    assert make().timestamp() is None


def test_timestamp_of_a_leap_second() -> None:
    # RFC 3339 §5.7 allows 23:59:60; the event is valid, so timestamp() must give an aware datetime, not raise.
    event = make(time="2016-12-31T23:59:60Z")
    stamp = event.timestamp()
    assert stamp is not None
    assert stamp.tzinfo is not None
    assert datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC) <= stamp <= datetime(2017, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------------------------
# attributes() and media_type().
# --------------------------------------------------------------------------------------------------------------------


def test_attributes_lists_what_is_set() -> None:
    event = make(
        subject="sub",
        time="2024-01-01T00:00:00Z",
        datacontenttype="application/json",
        dataschema="https://example.com/s",
        extensions={"n": 1, "b": False, "raw": b"\x01"},
        data={"x": 1},
    )
    assert event.attributes() == {
        **REQUIRED,
        "subject": "sub",
        "time": "2024-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "dataschema": "https://example.com/s",
        "n": 1,
        "b": False,
        "raw": b"\x01",
    }
    assert type(event.attributes()["b"]) is bool


def test_attributes_of_a_minimal_event() -> None:
    assert make().attributes() == REQUIRED


def test_media_type() -> None:
    assert make().media_type() is None
    media = make(datacontenttype="application/vnd.x+json; charset=utf-8").media_type()
    assert media is not None
    assert media.essence == "application/vnd.x+json"
    assert media.is_json is True


def test_equal_events_are_equal_and_different_ones_are_not() -> None:
    assert make(extensions={"a": 1}) == make(extensions={"a": 1})
    assert make(extensions={"a": 1}) != make(extensions={"a": 2})
    assert make(data=b"x") != make(data="x")
