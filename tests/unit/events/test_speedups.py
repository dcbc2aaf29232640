"""Tests of ``eventaudit.events._speedups``: the optional C accelerator, with the pure-Python codec as its oracle.

Every C function either answers as its Python twin does or says "not sure". The properties check exactly
that, on generated valid and broken inputs: C "valid" implies Python finds no failure, C "no repeated member"
implies ``json.loads`` with ``object_pairs_hook`` sees none, and every decoder gives the same event or the same
failures with and without the accelerator. When the extension was not built the C tests skip, except under
``CI=true``, where the accelerator must be there.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import string
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any
from unittest import mock

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventaudit.events import _accel, event, types
from eventaudit.events.bindings import http, kafka
from eventaudit.events.errors import CloudEventError
from eventaudit.events.event import CloudEvent, Extensions
from eventaudit.events.formats import json as json_format
from tests.conftest import in_ci, require

speedups: ModuleType | None
try:
    from eventaudit.events import _speedups as speedups
except ImportError:
    speedups = None

PURE_REQUESTED = os.environ.get(_accel.PURE_PYTHON_VARIABLE, "").strip() not in ("", "0")
SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_accelerator_is_built() -> None:
    require(speedups is not None, "the C accelerator _speedups was not built (no C compiler at install time?)")


def test_the_codec_uses_the_accelerator_unless_told_not_to() -> None:
    if PURE_REQUESTED:
        assert _accel.speedups is None
        return
    require(_accel.speedups is not None, "the codec runs without its C accelerator")


def test_eventaudit_pure_python_turns_the_accelerator_off() -> None:
    code = "from eventaudit.events import _accel, event; print(_accel.speedups, event._fast_looks_valid.__module__)"
    env = {**os.environ, _accel.PURE_PYTHON_VARIABLE: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "eventaudit.events.event"]


LOADING_TESTS = {
    "test_the_accelerator_is_built",
    "test_the_codec_uses_the_accelerator_unless_told_not_to",
    "test_eventaudit_pure_python_turns_the_accelerator_off",
}


@pytest.fixture(autouse=True)
def _needs_speedups(request: pytest.FixtureRequest) -> None:
    if request.node.name in LOADING_TESTS:
        return
    if speedups is None:
        if in_ci():
            pytest.fail("the C accelerator _speedups was not built (CI=true: this is a failure, not a skip)")
        pytest.skip("the C accelerator _speedups was not built")
    if _accel.speedups is None:  # EVENTAUDIT_PURE_PYTHON=1: the codec does not configure it, so do it here
        configure(speedups)


def configure(module: Any) -> None:
    """What event.py does when the accelerator is on."""
    module.configure(
        CloudEvent,
        event._looks_valid,
        specversion=event.SPECVERSION,
        sources=event._good_sources,
        media=event._good_media,
        uris=event._good_uris,
        reserved=event.RESERVED_NAMES,
        data_types=event._DATA_TYPES,
        extensions_type=Extensions,
        long_name=event._LONG_NAME,
        empty_extensions=event.EMPTY_EXTENSIONS,
    )
    module.configure_json(json_format._decoder.decode)
    module.configure_sorted_json(json_format._sorted_encoder.encode)


def c() -> Any:
    assert speedups is not None
    return speedups


@contextlib.contextmanager
def pure_python() -> Iterator[None]:
    """Every hook of the codec back on its pure-Python reference."""
    with contextlib.ExitStack() as stack:
        for module in (json_format, http, kafka, types):
            stack.enter_context(mock.patch.object(module, "_speedups", None))
        stack.enter_context(mock.patch.object(http, "_find_header", http._find))
        stack.enter_context(mock.patch.object(json_format, "_unique", json_format._surely_unique))
        stack.enter_context(mock.patch.object(event, "_fast_looks_valid", event._looks_valid))
        if speedups is not None:  # CloudEvent.__post_init__ is the C one when the codec uses the accelerator
            before = speedups.post_init_shortcut(False)
            stack.callback(speedups.post_init_shortcut, before)
        yield


@contextlib.contextmanager
def accelerated() -> Iterator[None]:
    """Every hook of the codec on the C accelerator, even under EVENTAUDIT_PURE_PYTHON=1."""
    with contextlib.ExitStack() as stack:
        for module in (json_format, http, kafka, types):
            stack.enter_context(mock.patch.object(module, "_speedups", c()))
        stack.enter_context(mock.patch.object(http, "_find_header", c().find_header))
        stack.enter_context(mock.patch.object(json_format, "_unique", c().surely_unique))
        stack.enter_context(mock.patch.object(event, "_fast_looks_valid", c().looks_valid))
        yield


def outcome(decode: Callable[[], Any]) -> Any:
    """What a decoder gives, in a comparable form: the event's fields with their types, or the failures."""
    try:
        result = decode()
    except CloudEventError as exc:
        return ("error", type(exc).__name__, exc.failures)
    except (TypeError, ValueError, AttributeError) as exc:  # not the codec's contract, but both must agree
        return ("exception", type(exc).__name__)
    if isinstance(result, http.Decoded):
        return ("ok", result.mode, [fields(ev) for ev in result.events])
    if isinstance(result, list) and result and all(isinstance(ev, CloudEvent) for ev in result):
        return ("ok", "batch", [fields(ev) for ev in result])
    if isinstance(result, CloudEvent):
        return ("ok", "event", fields(result))
    return ("ok", type(result).__name__, result)


def fields(ev: CloudEvent) -> list[tuple[str, str, Any]]:
    return [(name, type(value).__name__, value) for name, value in msgspec.structs.asdict(ev).items()]


def same_both_ways(decode: Callable[[], Any]) -> None:
    with pure_python():
        expected = outcome(decode)
    with accelerated():
        assert outcome(decode) == expected


# --------------------------------------------------------------------------------------------------------------------
# Timestamps: C is_timestamp agrees with types.is_timestamp, leap seconds (:60) aside ("not sure").
# --------------------------------------------------------------------------------------------------------------------


def two(low: int, high: int) -> st.SearchStrategy[str]:
    return st.integers(low, high).map(lambda n: f"{n:02d}")


# Each part of a timestamp: values in range (most draws), and values at and past its bounds.
TIMESTAMP_PARTS: dict[str, tuple[st.SearchStrategy[str], st.SearchStrategy[str]]] = {
    "year": (
        st.integers(0, 9999).map(lambda n: f"{n:04d}"),
        st.sampled_from(["1900", "2000", "2024", "2023", "0000", "99", "12023", "2O23"]),
    ),
    "month": (two(1, 12), st.sampled_from(["00", "13", "1", "02", "1a"])),
    "day": (two(1, 28), st.sampled_from(["00", "29", "30", "31", "32", "3"])),
    "t": (st.sampled_from("Tt"), st.sampled_from([" ", "TT", "", "x"])),
    "hour": (two(0, 23), st.sampled_from(["24", "23", "00", "2"])),
    "minute": (two(0, 59), st.sampled_from(["60", "59", "5"])),
    "second": (two(0, 59), st.sampled_from(["60", "61", "59", "6"])),
    "fraction": (
        st.one_of(st.just(""), st.text("0123456789", min_size=1, max_size=12).map(lambda d: "." + d)),
        st.sampled_from([".", ",5", ".5.5", ".\u0665"]),
    ),
    "offset": (
        st.one_of(
            st.sampled_from(["Z", "z"]),
            st.builds(lambda sign, h, m: f"{sign}{h}:{m}", st.sampled_from("+-"), two(0, 23), two(0, 59)),
        ),
        st.one_of(
            st.sampled_from(["", "+", "+0100", "+01", "Zz", " Z", "Z\n", "+01:00Z"]),
            st.builds(
                lambda sign, h, m: f"{sign}{h}:{m}",
                st.sampled_from("+-"),
                st.sampled_from(["24", "23", "00", "2", "x1"]),
                st.sampled_from(["60", "59", "00", "5"]),
            ),
        ),
    ),
}


@st.composite
def timestamps(draw: st.DrawFn) -> str:
    """RFC 3339 timestamps with none, one or two parts at or past their bounds."""
    names = st.sampled_from(sorted(TIMESTAMP_PARTS))
    odd = draw(st.one_of(st.just([]), st.lists(names, max_size=1), st.lists(names, max_size=2, unique=True)))
    part = {name: draw(TIMESTAMP_PARTS[name][name in odd]) for name in TIMESTAMP_PARTS}
    return "{year}-{month}-{day}{t}{hour}:{minute}:{second}{fraction}{offset}".format(**part)


BOUNDS = {
    "year": ["0000", "9999", "1900", "2000", "2024", "99", "12023", "2O23", "\u0662023"],
    "month": ["00", "01", "12", "13", "1", "1a", "\uff11"],
    "day": ["00", "01", "28", "29", "30", "31", "32", "3"],
    "t": ["T", "t", " ", "TT", "", "x"],
    "hour": ["00", "23", "24", "2", "\u0662"],
    "minute": ["00", "59", "60", "5"],
    "second": ["00", "59", "60", "61", "6"],
    "fraction": ["", ".0", ".123456789012", ".", ",5", ".5.5", ".\u0665"],
    "offset": ["Z", "z", "", "+", "+0100", "+01", "Zz", " Z", "Z\n", "+01:00Z"]
    + [f"{sign}{h}:{m}" for sign in "+-" for h in ("00", "23", "24", "2") for m in ("00", "59", "60", "5")],
}
BASES = [
    {"year": "2024", "month": "01", "day": "15", "t": "T", "hour": "12", "minute": "30", "second": "45"},
    {"year": "2023", "month": "02", "day": "28", "t": "t", "hour": "23", "minute": "59", "second": "59"},
    {"year": "2000", "month": "04", "day": "30", "t": "T", "hour": "00", "minute": "00", "second": "00"},
]


def at_every_bound() -> Iterator[str]:
    """Valid timestamps with each part in turn set to each of its values at or past a bound."""
    for base in BASES:
        for fraction, offset in (("", "Z"), (".5", "+05:30")):
            parts = {**base, "fraction": fraction, "offset": offset}
            for name, values in BOUNDS.items():
                for value in values:
                    yield "{year}-{month}-{day}{t}{hour}:{minute}:{second}{fraction}{offset}".format(
                        **{**parts, name: value}
                    )
    for year in (0, 4, 1800, 1900, 2000, 2022, 2023, 2024, 2100, 2200, 9996):
        for month in range(1, 13):
            for day in (28, 29, 30, 31):
                yield f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z"


@pytest.mark.parametrize("value", sorted(set(at_every_bound())))
def test_is_timestamp_at_every_bound(value: str) -> None:
    verdict = c().is_timestamp(value)
    if verdict is None:
        assert value[17:19] == "60"
    else:
        assert verdict is types.is_timestamp(value)


def mutated(text: str, data: st.DataObject) -> str:
    """``text`` with one character replaced, removed or added."""
    if not text:
        return text
    at = data.draw(st.integers(0, len(text) - 1))
    char = data.draw(st.sampled_from(["0", "9", "a", "T", ":", "-", "+", ".", "\u0661", "\uff10", "\x00", ""]))
    return text[:at] + char + text[at + data.draw(st.integers(0, 1)) :]


@SETTINGS
@given(timestamps(), st.data())
@example("2024-02-29T00:00:00Z", None)
@example("2023-02-29T00:00:00Z", None)
@example("1900-02-29T00:00:00Z", None)
@example("0000-02-29T00:00:00Z", None)
@example("2023-04-31T00:00:00Z", None)
@example("2023-01-01T00:00:00.Z", None)
@example("2023-01-01T23:59:60Z", None)
def test_is_timestamp_agrees_with_python(value: str, data: st.DataObject | None) -> None:
    for text in (value, mutated(value, data) if data is not None else value):
        verdict = c().is_timestamp(text)
        if verdict is not None:
            assert verdict is types.is_timestamp(text), text
        else:
            assert text[17:19] == "60"


def python_micros(value: str) -> int:
    with mock.patch.object(types, "_speedups", None):
        return types.timestamp_micros(value)


def check_micros(value: str) -> None:
    """C timestamp_micros is Python's for every valid Timestamp but a leap second, and "not sure" otherwise."""
    micros = c().timestamp_micros(value)
    if types.is_timestamp(value) and value[17:19] != "60":
        assert micros == python_micros(value), value
    else:
        assert micros is None, value


@pytest.mark.parametrize("value", sorted(set(at_every_bound())))
def test_timestamp_micros_at_every_bound(value: str) -> None:
    check_micros(value)


@SETTINGS
@given(timestamps(), st.data())
@example("0000-01-01T00:00:00Z", None)  # year 0: before any era's start, floor division matters
@example("0000-02-29T23:59:59.999999-23:59", None)
@example("9999-12-31T23:59:59.9999999+23:59", None)
@example("1969-12-31T23:59:59.5Z", None)
def test_timestamp_micros_agrees_with_python(value: str, data: st.DataObject | None) -> None:
    for text in (value, mutated(value, data) if data is not None else value):
        check_micros(text)
    if types.is_timestamp(value):
        assert types.timestamp_micros(value) == python_micros(value)  # the codec's own path, C or not


@SETTINGS
@given(st.text(max_size=40))
def test_is_timestamp_agrees_with_python_on_any_text(text: str) -> None:
    verdict = c().is_timestamp(text)
    assert verdict is None or verdict is types.is_timestamp(text)


# --------------------------------------------------------------------------------------------------------------------
# The event: C sure_valid never calls an invalid event valid, and takes every plain valid event.
# --------------------------------------------------------------------------------------------------------------------

printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=12)
odd_text = st.one_of(
    st.just(""), st.text(max_size=8), st.sampled_from(["é", "a\x7f", "a\x00", "\ud800", "\ufffe", " ", "\u212a"])
)
some_string = st.one_of(printable, printable, odd_text, st.none(), st.integers(), st.just(["a"]), st.just({"a": 1}))
extension_names = st.one_of(
    st.text("abcxyz019", min_size=1, max_size=22),
    st.sampled_from(["partitionkey", "data", "id", "data_base64", "time", "Ab", "x-y", "", "é", "a" * 20, "a" * 21]),
)
extension_values = st.one_of(
    printable,
    odd_text,
    st.integers(-(2**31) - 2, -(2**31) + 2),
    st.integers(2**31 - 3, 2**31 + 1),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.binary(max_size=4),
    st.none(),
    st.floats(allow_nan=False),
    st.just([1]),
    st.just(bytearray(b"x")),
)
data_values = st.one_of(
    st.none(),
    st.binary(max_size=4),
    st.text(max_size=4),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.just({"a": [1]}),
    st.just([1, "x"]),
    st.just((1,)),
    st.just(bytearray(b"x")),
    st.just({1, 2}),
    st.just(object()),
)
near_misses = st.sampled_from(["a\x7f", "\x1f", "a\x00b", "é", "\x80", "\ud800", "", " ", "\u212a", "1.0\n"])
any_fields = st.fixed_dictionaries(
    {
        "specversion": st.sampled_from(["1.0", "1.0", "1.0", "0.3", "1.0 ", "", None, 1.0]),
        "id": some_string,
        "source": st.one_of(
            st.sampled_from(["/eventaudit/users", "urn:uuid:6e8b", "https://x.example/y", "a b"]), some_string
        ),
        "type": some_string,
        "datacontenttype": st.one_of(
            st.none(),
            st.sampled_from(["application/json", "text/plain; charset=utf-8", "bad", "a/b c", ""]),
            some_string,
        ),
        "dataschema": st.one_of(
            st.none(), st.sampled_from(["https://x.example/s.json", "urn:x", "/rel", "a b"]), some_string
        ),
        "subject": st.one_of(st.none(), some_string),
        "time": st.one_of(st.none(), timestamps(), some_string),
        "extensions": st.one_of(
            st.dictionaries(extension_names, extension_values, max_size=4),
            st.dictionaries(extension_names, extension_values, max_size=3).map(Extensions),
            st.just(Extensions()),
        ),
        "data": data_values,
    }
)
valid_timestamps = st.builds(
    lambda y, mo, d, h, mi, s, frac, off: (
        f"{y:04d}-{mo:02d}-{min(d, 28 if mo == 2 else 30):02d}T{h:02d}:{mi:02d}:{s:02d}{frac}{off}"
    ),
    st.integers(0, 9999),
    st.integers(1, 12),
    st.integers(1, 31),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", ".1", ".123456", ".000000001"]),
    st.sampled_from(["Z", "z", "+00:00", "-23:59", "+05:30"]),
)
valid_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20).filter(
    lambda name: name not in event.RESERVED_NAMES
)
valid_fields = st.fixed_dictionaries(
    {
        "specversion": st.just("1.0"),
        "id": printable,
        "source": st.sampled_from(["/eventaudit/users", "urn:uuid:6e8b", "https://x.example/y", "a", "/s?q#f"]),
        "type": printable,
        "datacontenttype": st.one_of(st.none(), st.sampled_from(["application/json", "text/plain; charset=utf-8"])),
        "dataschema": st.one_of(st.none(), st.sampled_from(["https://x.example/s.json", "urn:x"])),
        "subject": st.one_of(st.none(), printable),
        "time": st.one_of(st.none(), valid_timestamps),
        "extensions": st.dictionaries(
            valid_names,
            st.one_of(printable, st.just(""), st.integers(-(2**31), 2**31 - 1), st.booleans(), st.binary(max_size=3)),
            max_size=3,
        ).map(Extensions),
        "data": st.one_of(st.none(), st.binary(max_size=3), printable, st.just({"a": [1]}), st.integers(), st.floats()),
    }
)


@st.composite
def event_fields(draw: st.DrawFn) -> dict[str, Any]:
    """Valid events, valid events with one or two attributes broken, and anything at all."""
    kind = draw(st.sampled_from(["valid", "mutated", "mutated", "any"]))
    if kind == "any":
        return draw(any_fields)
    values = draw(valid_fields)
    if kind == "mutated":
        broken = draw(any_fields)
        for name in draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=2, unique=True)):
            values[name] = broken[name]
            if name in ("id", "type", "subject", "source", "time") and draw(st.booleans()):
                values[name] = draw(near_misses)
            elif name == "extensions" and draw(st.booleans()):
                bad_name = draw(st.one_of(st.sampled_from(sorted(event.RESERVED_NAMES)), extension_names))
                values[name] = Extensions({draw(valid_names): draw(near_misses), bad_name: "x"})
    return values


BASE = CloudEvent(specversion="1.0", id="1", source="/s", type="t")


def unchecked_event(values: dict[str, Any]) -> CloudEvent:
    """A CloudEvent holding ``values`` as they are, valid or not (no __post_init__)."""
    ev = copy.copy(BASE)
    for name, value in values.items():
        msgspec.structs.force_setattr(ev, name, value)
    return ev


@SETTINGS
@given(event_fields())
@example({**msgspec.structs.asdict(BASE), "time": "2023-01-01T12:00:60Z"})
@example({**msgspec.structs.asdict(BASE), "extensions": {"a" * 21: "x"}})
@example({**msgspec.structs.asdict(BASE), "extensions": {"x": 2**31}})
@example({**msgspec.structs.asdict(BASE), "extensions": {"x": True, "y": b"", "z": ""}})
def test_c_valid_means_python_valid(values: dict[str, Any]) -> None:
    ev = unchecked_event(values)
    sure = c().sure_valid(ev)
    python_says_valid = event._check(ev) == []
    if sure:
        assert python_says_valid, values
    if event._looks_valid(ev) and "60" not in str(values["time"])[17:19]:  # the caches are primed now
        assert c().sure_valid(ev), values  # the C path takes every event the Python fast path takes
    assert c().looks_valid(ev) is event._looks_valid(ev) or c().sure_valid(ev)


@SETTINGS
@given(event_fields())
def test_the_constructor_decides_the_same_both_ways(values: dict[str, Any]) -> None:
    same_both_ways(lambda: CloudEvent(**values))


def test_sure_valid_is_not_sure_about_other_types() -> None:
    class Other(CloudEvent):
        pass

    assert c().sure_valid(object()) is False
    assert c().sure_valid(Other(specversion="1.0", id="1", source="/s", type="t")) is False


# --------------------------------------------------------------------------------------------------------------------
# Repeated JSON members: C "unique" implies json.loads sees no repeated member, at any depth.
# --------------------------------------------------------------------------------------------------------------------


class RepeatedError(Exception):
    pass


def repeats_a_member(raw: bytes) -> bool:
    def pairs(members: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in members]
        if len(set(names)) != len(names):
            raise RepeatedError
        return dict(members)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except RepeatedError:
        return True
    return False


spaces = st.sampled_from(["", "", " ", "\n  ", "\t", "\r\n"])
member_names = st.sampled_from(
    ['"a"', '"b"', '"id"', '"data"', '""', '"é"', '"ab"', '"a\\"b"', '"\\u0061"', '"\\u00e9"', '"\\\\"', '"a b"', '"}"']
)
scalars = st.sampled_from(
    ["1", "-2.5", "1e3", "0", "true", "false", "null", '""', '"x"', '"a\\"b"', '"\\\\"', '"{"', '"é"', '"\\u00e9"']
)


def containers(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    member = st.builds(
        lambda s1, name, s2, value: f"{s1}{name}{s2}:{s1}{value}{s2}", spaces, member_names, spaces, inner
    )
    return st.one_of(
        st.lists(st.builds(lambda s, v: f"{s}{v}{s}", spaces, inner), max_size=4).map(
            lambda xs: "[" + ",".join(xs) + "]"
        ),
        st.lists(member, max_size=5).map(lambda ms: "{" + ",".join(ms) + "}"),
    )


json_texts = st.recursive(scalars, containers, max_leaves=30)


@SETTINGS
@given(json_texts)
@example('{"a":1,"a":2}')
@example('{"a":{"b":1},"b":{"b":2}}')
@example('[{"a":1},{"a":1}]')
@example('{"a":[{"x":1,"x":2}]}')
@example('{"a":1,"\\u0061":2}')
@example('{"a\\"":1,"a\\"":2}')
@example('{"}":{"a":1},"a":2}')
def test_c_unique_means_no_repeated_member(text: str) -> None:
    raw = text.encode()
    repeated = repeats_a_member(raw)
    verdict = c().surely_unique(raw)
    if verdict:
        assert not repeated, text
    if b"\\" not in raw:  # names without escapes: the C answer is exact
        assert verdict is not repeated, text
    same_both_ways(lambda: json_format.loads(raw))


@SETTINGS
@given(st.lists(st.integers(0, 300), max_size=400), st.integers(1, 3))
def test_c_unique_with_many_members(names: list[int], depth: int) -> None:
    text = "{" + ",".join(f'"n{n}":{n}' for n in names) + "}"
    for _ in range(depth - 1):
        text = '{"x":[' + text + "," + text + "]}"
    raw = text.encode()
    assert c().surely_unique(raw) is (len(set(names)) == len(names))


@SETTINGS
@given(st.binary(max_size=64))
@example(b"[" * 5000 + b"]" * 5000)
@example(b'{"a":"\\')
@example(b'{"a":1}}')
def test_c_unique_on_any_bytes(raw: bytes) -> None:
    verdict = c().surely_unique(raw)
    assert verdict is c().surely_unique(bytearray(raw)) is c().surely_unique(memoryview(raw))
    try:
        repeated = repeats_a_member(raw)
    except (ValueError, RecursionError):
        return
    assert not (verdict and repeated)


# --------------------------------------------------------------------------------------------------------------------
# The decoders give the same event or the same failures with and without the accelerator.
# --------------------------------------------------------------------------------------------------------------------

json_members = st.dictionaries(
    st.sampled_from([*sorted(event.CORE_ATTRIBUTES), "data", "data_base64", "partitionkey", "ext1", "Bad", "x" * 21]),
    st.one_of(st.none(), printable, odd_text, st.integers(-3, 3), st.integers(2**31 - 1, 2**31), st.booleans()),
    max_size=12,
)
VALID = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}


@SETTINGS
@given(json_members, st.booleans(), st.booleans(), st.booleans())
@example({"data_base64": "AAE="}, False, False, True)
@example({"ext1": None, "ext2": "x"}, False, False, True)
def test_the_json_format_decodes_the_same_both_ways(
    members: dict[str, Any], valid: bool, batch: bool, ascii_only: bool
) -> None:
    obj = {**VALID, **members} if valid else members
    body = json.dumps([obj, obj] if batch else obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    same_both_ways(lambda: json_format.decode_batch(body) if batch else json_format.decode(body))
    same_both_ways(lambda: json_format.from_dict(obj))


http_names = st.sampled_from(
    [
        "ce-specversion",
        "ce-id",
        "CE-Source",
        "Ce-type",
        "cE-subject",
        "ce-time",
        "ce-partitionkey",
        "ce-dataschema",
        "ce-datacontenttype",
        "ce-data",
        "ce-Ext1",
        "ce-",
        "ce-é",
        "ce-\u212a",
        "content-type",
        "Content-Type",
        "x-other",
        "ce_id",
        "c",
        "\u212a",
    ]
)
http_values = st.one_of(
    printable,
    st.sampled_from(["1.0", "/s", "t", "2023-01-01T00:00:00Z", "", " x ", "%41", "a%", '"q"', '"a\\"b"', "é", "a\x00"]),
    st.sampled_from(["https://x.example/s", "urn:x", '"1.0"', '"/s', "1.0%", "%", "\x7f"]),
)
bodies = st.sampled_from([b"", b'{"a":1}', b"plain", b"\xff", b"[1,", b"null"])
content_types = st.sampled_from([None, "application/json", "text/plain", "application/octet-stream", "bad type"])


@SETTINGS
@given(st.lists(st.tuples(http_names, http_values), max_size=10), content_types, bodies, st.booleans())
def test_http_binary_mode_decodes_the_same_both_ways(
    pairs: list[tuple[str, str]], content_type: str | None, body: bytes, as_dict: bool
) -> None:
    pairs = [("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t"), *pairs]
    if content_type is not None:
        pairs.append(("content-type", content_type))
    headers: Any = dict(pairs) if as_dict else pairs
    same_both_ways(lambda: http.decode(headers, body))
    pairs_given = headers.items() if as_dict else headers
    with pure_python():
        expected = outcome(lambda: http._find(pairs_given, "content-type"))
    assert outcome(lambda: c().find_header(pairs_given, "content-type")) == expected
    assert outcome(lambda: c().find_header(pairs_given, "Content-Type")) == outcome(
        lambda: http._find(pairs_given, "Content-Type")
    )


@SETTINGS
@given(st.lists(st.tuples(http_names, http_values), max_size=6))
def test_http_headers_of_any_shape_decode_the_same_both_ways(pairs: list[tuple[str, str]]) -> None:
    shapes: list[Any] = [pairs, tuple(pairs), [list(p) for p in pairs], [(1, "x"), *pairs], [*pairs, ("a",)]]
    for headers in shapes:
        same_both_ways(lambda h=headers: http.decode(h, b"x"))  # type: ignore[misc]


raw_header_bytes = st.one_of(
    st.binary(max_size=12), http_names.map(str.encode), st.sampled_from([b"", b"\xff\x00", b"\x80"])
)


@SETTINGS
@given(st.lists(st.tuples(raw_header_bytes, raw_header_bytes), max_size=10))
def test_latin1_pairs_are_the_python_text_headers(raw: list[tuple[bytes, bytes]]) -> None:
    # RFC 9110 §5.5: field values are octets; each keeps its number as a code point, none refused.
    expected = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
    assert c().latin1_pairs(raw) == expected
    with pure_python():
        assert http.text_headers(raw) == expected
    with accelerated():
        assert http.text_headers(raw) == expected
        assert http.text_headers(tuple(raw)) == expected  # not a list: C is not sure, Python builds it


@pytest.mark.parametrize(
    "raw",
    [((b"a", b"b"),), [(b"a",)], [(b"a", b"b", b"c")], [[b"a", b"b"]], [(bytearray(b"a"), b"b")], [(b"a", "b")], {}],
)
def test_latin1_pairs_are_not_sure_about_other_shapes(raw: Any) -> None:
    assert c().latin1_pairs(raw) is None


def test_text_headers_turn_bytearrays_too_as_python_does() -> None:
    with accelerated():
        assert http.text_headers([(bytearray(b"ce-id"), b"\xe9")]) == [("ce-id", "\xe9")]


kafka_names = st.one_of(
    http_names.map(lambda n: n.replace("-", "_") if n.lower().startswith("ce-") else n),
    http_names.map(lambda n: n.replace("-", "_").encode("utf-8") if n.lower().startswith("ce-") else n.encode()),
)
kafka_values = st.one_of(
    http_values.map(lambda v: v.encode("utf-8", "surrogatepass")),
    http_values,
    st.just(None),
    st.just(b"\xff\xfe"),
    st.just(b"application/cloudevents+json"),
)


@SETTINGS
@given(
    st.lists(st.tuples(kafka_names, kafka_values), max_size=10),
    st.sampled_from([None, b"k", "k", b"\xff"]),
    st.sampled_from([None, b"", b'{"a":1}', b"x", msgspec.json.encode(VALID)]),
)
def test_kafka_records_decode_the_same_both_ways(headers: list[tuple[Any, Any]], key: Any, value: bytes | None) -> None:
    base: list[tuple[Any, Any]] = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("ce_source", b"/s"), ("ce_type", b"t")]
    for record_headers in (base + headers, headers, tuple(base + headers)):
        same_both_ways(lambda h=record_headers: kafka.decode(key, h, value))  # type: ignore[misc]


@SETTINGS
@given(json_members, st.sampled_from([None, b"k", "k", b"\xff", b""]), st.booleans(), st.booleans())
@example({"partitionkey": None}, b"k", True, True)
@example({"partitionkey": "p"}, b"k", True, True)
def test_kafka_structured_mode_decodes_the_same_both_ways(
    members: dict[str, Any], key: Any, valid: bool, ascii_only: bool
) -> None:
    obj = {**VALID, **members} if valid else members
    value = json.dumps(obj, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    headers = [("content-type", b"application/cloudevents+json; charset=utf-8"), ("ce_id", b"ignored")]
    same_both_ways(lambda: kafka.decode(key, headers, value))
    same_both_ways(lambda: http.decode({"Content-Type": "application/cloudevents+json"}, value))


def test_the_benchmark_messages_take_the_c_path() -> None:
    """The plain messages of bench/codec are decided in C, not handed back to Python."""
    body = msgspec.json.encode(
        {**VALID, "time": "2026-11-27T02:01:22.123456Z", "subject": "1042", "partitionkey": "1042", "data": {"a": 1}}
    )
    assert c().surely_unique(body)
    obj = msgspec.json.decode(body)
    with accelerated():
        ev = json_format.decode(body)
    assert c().event_from_dict(dict(obj)) == ev == c().json_event(body)
    assert c().json_event(body, "partitionkey", "k") == ev
    assert c().json_event(
        body.replace(b'"partitionkey":"1042"', b'"partitionkey":null'), "partitionkey", "k"
    ).extensions == {"partitionkey": "k"}
    assert c().sure_valid(ev)
    headers = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t", "content-type": "text/plain"}
    assert c().http_attributes(headers.items()) == {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    record = [("ce_specversion", b"1.0"), ("ce_id", b"1"), ("content-type", b"text/plain")]
    assert c().kafka_attributes(record) == {"specversion": "1.0", "id": "1", "content-type": "text/plain"}


@SETTINGS
@given(st.text(st.characters(max_codepoint=0x80), max_size=40), st.sampled_from(["subject", "id", "type", "ext"]))
@example("abcdefgh\x7f", "subject")
@example("abcdefg\x1f", "subject")
@example("\x7fbcdefghijklmnop", "id")
def test_printable_ascii_is_decided_exactly(text: str, where: str) -> None:
    values = {**VALID, "subject": "s", "extensions": Extensions({"ext": text})}
    if where != "ext":
        values[where] = text
    ev = unchecked_event(values)
    event._looks_valid(ev)  # primes the caches
    plain = text.isascii() and text.isprintable() and (text != "" or where == "ext")
    assert c().sure_valid(ev) is plain


def test_plain_printable_ascii_is_every_printable_character() -> None:
    ev = unchecked_event({**VALID, "subject": string.printable[:95]})
    event._looks_valid(ev)
    assert c().sure_valid(ev)


# --------------------------------------------------------------------------------------------------------------------
# sorted_json: formats/json.py encode_sorted (msgspec, order="sorted", of to_dict) byte for byte, or "not sure".
# --------------------------------------------------------------------------------------------------------------------

all_characters = "".join(map(chr, range(0x80))) + "\x7f\x80é\u2028\ufffe\U0001f600"
sorted_data = st.one_of(
    data_values,
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4)),
        lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
        max_leaves=12,
    ),
)


def python_sorted_json(ev: CloudEvent) -> bytes | type[BaseException]:
    try:
        return json_format._sorted_encoder.encode(json_format.to_dict(ev))
    except Exception as exc:
        return type(exc)


@SETTINGS
@given(event_fields(), sorted_data, st.dictionaries(extension_names, extension_values, max_size=4))
@example({**VALID, "subject": all_characters}, None, {})
@example({**VALID, "subject": "a\ud800"}, None, {})
@example({**VALID}, {"b": 1, "a": {"d": [{"z": 1, "y": 2}], "c": 3}}, {"zz": "1", "aa": b"\x00\xff", "mm": 7})
@example({**VALID}, "text data", {"data": "x"})
@example({**VALID}, b"\x00\x01\x02\x03\x04", {"id": "again"})
@example({**VALID}, None, {"b" * 30: True, "a": False, "c": -(2**63), "d": 2**63})
def test_sorted_json_is_the_python_encoding(values: dict[str, Any], data: Any, extensions: dict[str, Any]) -> None:
    values = {**values, "data": data}
    if extensions:
        values["extensions"] = Extensions(extensions)
    ev = unchecked_event(values)
    wanted = python_sorted_json(ev)
    got = c().sorted_json(ev)
    if got is not None:
        assert got == wanted, values
    with accelerated():
        if isinstance(wanted, bytes):
            assert json_format.encode_sorted(ev) == wanted
        else:  # what Python cannot encode, the C function left to Python: the same failure
            with pytest.raises(wanted):
                json_format.encode_sorted(ev)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1023, 1024, 5000])
def test_sorted_json_of_long_values_and_many_extensions(size: int) -> None:
    """Past the C function's stack buffer (1 KiB) and its inline member slots (24)."""
    extensions = Extensions(
        {f"x{n}": "\x01" * size if n % 2 else bytes(range(256)) * (size // 256 + 1) for n in range(30)}
    )
    ev = unchecked_event({**VALID, "subject": "\n" * size, "extensions": extensions, "data": b"\xfe" * size})
    assert c().sorted_json(ev) == python_sorted_json(ev)


def test_sorted_json_takes_the_plain_events() -> None:
    """The events of the benchmarks, of every data kind, are encoded in C, not handed back to Python."""
    for data in ({"id": "1", "name": "Ozzy Osbourne"}, "text", b"\x00", None, [1, 2.5, None]):
        ev = CloudEvent(
            **VALID,
            subject="1042",
            time="2026-11-27T02:01:22.123456Z",
            datacontenttype=None if data is None else "application/json",
            extensions={"partitionkey": "1042", "n": 3, "ok": True},
            data=data,
        )
        encoded = c().sorted_json(ev)
        assert encoded is not None
        assert encoded == python_sorted_json(ev)


def test_sorted_json_is_not_sure_about_other_types() -> None:
    assert c().sorted_json(object()) is None
    assert c().sorted_json({"specversion": "1.0"}) is None


def test_sorted_json_keeps_references_right_when_it_is_not_sure() -> None:
    """An event it cannot take (a float extension) after one that filled many member slots: no reference lost."""
    full = unchecked_event({**VALID, "data": {"a": 1}, "extensions": Extensions({f"a{n}": "x" for n in range(6)})})
    odd = 1.5e300
    unsure = unchecked_event({**VALID, "extensions": Extensions({"x": "v", "y": odd, "z": None})})
    before = sys.getrefcount(odd), sys.getrefcount(None)
    for _ in range(200):
        assert c().sorted_json(full) == python_sorted_json(full)
        assert c().sorted_json(unsure) is None
    assert sys.getrefcount(odd) == before[0]
    assert abs(sys.getrefcount(None) - before[1]) < 50  # (None is shared; a lost reference per call would show)


def test_sorted_json_holds_what_it_writes_while_the_data_runs_python_code() -> None:
    """Encoding the data may run Python code (here a datetime's tzinfo) that changes the event under it: the
    answer is what to_dict saw, as in Python, never freed memory."""
    import datetime

    holder: dict[str, CloudEvent] = {}

    class Meddling(datetime.tzinfo):
        def utcoffset(self, _dt: datetime.datetime | None) -> datetime.timedelta:
            ev = holder["ev"]
            dict.clear(ev.extensions)  # read-only to everyone else; this is what hostile code could do
            msgspec.structs.force_setattr(ev, "subject", "changed")
            return datetime.timedelta(hours=1)

        def dst(self, _dt: datetime.datetime | None) -> datetime.timedelta:
            return datetime.timedelta(0)

    def event() -> CloudEvent:
        extensions = Extensions({f"name{n}": f"value{n}" * 3 for n in range(4)})
        data = [datetime.datetime(2026, 1, 1, tzinfo=Meddling())]
        holder["ev"] = ev = unchecked_event({**VALID, "subject": "s" * 40, "extensions": extensions, "data": data})
        return ev

    wanted = python_sorted_json(event())
    assert isinstance(wanted, bytes)
    assert b"name3" in wanted
    assert b'"subject":"ssss' in wanted
    got = c().sorted_json(event())
    assert got in (None, wanted)
