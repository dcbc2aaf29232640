"""``httpheaders``: the protocol's ``on_header``, in Python (the reference) and in C, held to each other.

The C twin is taken when it was built; under ``CI=true`` it must be. The properties run every sequence of
``reset``/``count``/field calls through both and compare the fields kept, the count and the refusals; the
protocol tests feed whole requests through the httptools protocol with each of the two.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from uvicorn.config import Config
from uvicorn.server import ServerState

from eventaudit import httpheaders, httptoolsprotocol
from eventaudit.events._accel import PURE_PYTHON_VARIABLE
from eventaudit.httplimits import MAX_HEADER_BYTES
from tests.conftest import require

try:
    from eventaudit import _httpspeedups
except ImportError:
    _httpspeedups = None  # type: ignore[assignment]

PURE_REQUESTED = os.environ.get(PURE_PYTHON_VARIABLE, "").strip() not in ("", "0")
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def c_class() -> Any:
    require(_httpspeedups is not None, "the C extension _httpspeedups was not built (no C compiler at install time?)")
    return _httpspeedups.HeaderPairs


def test_the_protocol_takes_the_c_twin_unless_told_not_to() -> None:
    if PURE_REQUESTED:
        assert httpheaders.header_pairs is httpheaders.HeaderPairs
        return
    assert httpheaders.header_pairs is c_class()


def test_eventaudit_pure_python_keeps_the_python_class() -> None:
    code = "from eventaudit import httpheaders; print(httpheaders.header_pairs is httpheaders.HeaderPairs)"
    env = {**os.environ, PURE_PYTHON_VARIABLE: "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "True"


class TooLargeError(Exception):
    pass


def refuse() -> None:
    raise TooLargeError


def run(kind: Callable[..., Any], limit: int, steps: list[tuple[Any, ...]], noted: tuple[bytes, ...] = ()) -> list[Any]:
    """What each step gave (the pairs, size and notes after it, or the refusal), through one implementation."""
    pairs = kind(limit, refuse, noted)
    seen: list[Any] = []
    for step in steps:
        try:
            if step[0] == "reset":
                before = pairs.first
                kept = dict(before)
                listed = pairs.reset()
                assert listed is pairs.pairs
                assert listed == []
                assert pairs.first == {}
                assert before == kept  # the last request's notes stay with whoever holds them
            elif step[0] == "count":
                pairs.count(step[1])
            else:
                pairs(step[1], step[2])
            seen.append((list(pairs.pairs), pairs.size, pairs.hosts, pairs.expect_continue, pairs.transfer_codings))
        except (TooLargeError, TypeError, ValueError) as exc:
            seen.append((type(exc).__name__, list(pairs.pairs), pairs.size, pairs.hosts, pairs.expect_continue))
            seen.append(pairs.transfer_codings)
        seen.append(dict(pairs.first))
    return seen


names = st.one_of(
    st.sampled_from([b"Host", b"content-type", b"CE-ID", b"X-Request-ID", b"", b"\xc9T\xe9", b"a-Z_@[`{"]),
    st.sampled_from([b"host", b"HOST", b"hosts", b"Expect", b"expect ", b"Transfer-Encoding", b"transfer-encodinG"]),
    st.binary(max_size=12),
)
values = st.one_of(
    st.sampled_from([b"100-continue", b"100-Continue", b"100-continue ", b"chunked", b"gzip, chunked", b""]),
    st.binary(max_size=40),
)
noted_names = st.sampled_from([b"x-request-id", b"host", b"content-length", b"ce-id", b"", b"\xc9t\xe9"])
steps = st.lists(
    st.one_of(
        st.tuples(st.just("field"), names, values),
        st.tuples(st.just("count"), st.integers(0, 50)),
        st.tuples(st.just("reset")),
    ),
    max_size=30,
)


@SETTINGS
@given(st.integers(0, 200), steps)
@example(10, [("field", b"AB", b"cdef")])  # 2 + 4 + 4 = 10: at the limit, kept
@example(9, [("field", b"AB", b"cdef")])  # over it: refused before it is kept
@example(5, [("count", 5), ("count", 1), ("reset",), ("count", 5)])
@example(200, [("field", b"Host", b"a"), ("field", b"EXPECT", b"100-CONTINUE"), ("reset",), ("field", b"host", b"b")])
@example(200, [("field", b"Transfer-Encoding", b"gzip"), ("field", b"transfer-encoding", b"chunked"), ("reset",)])
def test_the_c_twin_keeps_and_refuses_as_the_python_class(limit: int, ops: list[tuple[Any, ...]]) -> None:
    assert run(c_class(), limit, ops) == run(httpheaders.HeaderPairs, limit, ops)


@SETTINGS
@given(st.integers(0, 200), steps, st.lists(noted_names, max_size=4, unique=True).map(tuple))
@example(200, [("field", b"X-Request-ID", b"a"), ("field", b"x-request-id", b"b"), ("reset",)], (b"x-request-id",))
@example(7, [("field", b"ab", b"c"), ("field", b"ab", b"d")], (b"ab",))  # the second is refused: not noted
def test_the_c_twin_notes_the_first_values_as_the_python_class(
    limit: int, ops: list[tuple[Any, ...]], noted: tuple[bytes, ...]
) -> None:
    assert run(c_class(), limit, ops, noted) == run(httpheaders.HeaderPairs, limit, ops, noted)


@pytest.mark.parametrize("kind", ["python", "c"])
def test_first_holds_the_first_kept_value_of_each_noted_name(kind: str) -> None:
    cls = httpheaders.HeaderPairs if kind == "python" else c_class()
    pairs = cls(1000, refuse, (b"x-request-id", b"content-length"))
    for name, value in ((b"X-Request-ID", b"a"), (b"Host", b"h"), (b"x-request-id", b"b"), (b"Content-Length", b"0")):
        pairs(name, value)
    assert pairs.first == {b"x-request-id": b"a", b"content-length": b"0"}
    held = pairs.first
    pairs.reset()
    assert pairs.first == {}
    assert held == {b"x-request-id": b"a", b"content-length": b"0"}


@pytest.mark.parametrize("kind", ["python", "c"])
def test_bad_arguments_are_refused_alike(kind: str) -> None:
    cls = httpheaders.HeaderPairs if kind == "python" else c_class()
    with pytest.raises(TypeError):
        cls(10, "not callable")
    pairs = cls(10, refuse)
    for name, value in (("str", b"v"), (b"n", "str"), (bytearray(b"n"), b"v"), (None, b"v")):
        with pytest.raises(TypeError):
            pairs(name, value)
    with pytest.raises(ValueError, match="negative"):
        pairs.count(-1)
    for noted in ([b"x"], (b"x", "y"), (bytearray(b"x"),)):
        with pytest.raises(TypeError, match="noted"):
            cls(10, refuse, noted)
    with pytest.raises(ValueError, match="lower-case"):
        cls(10, refuse, (b"X-Request-ID",))
    assert pairs.pairs == []
    assert pairs.size == 0
    assert pairs.limit == 10


def test_the_c_twin_not_set_up_refuses_instead_of_crashing() -> None:
    cls = c_class()
    pairs = cls.__new__(cls)
    with pytest.raises(RuntimeError, match="not initialised"):
        pairs.count(1)
    with pytest.raises(RuntimeError, match="not initialised"):
        pairs(b"name", b"value")


def test_the_count_saturates_instead_of_wrapping() -> None:
    pairs = c_class()(100, refuse)
    pairs(b"a", b"b")
    with pytest.raises(TooLargeError):
        pairs.count(sys.maxsize)
    assert pairs.size == sys.maxsize


def test_a_lowered_name_is_a_new_bytes_and_a_lower_case_one_is_kept_as_it_is() -> None:
    pairs = c_class()(100, refuse)
    lower, upper, value = b"ce-id", b"CE-Id", b"1"
    pairs(lower, value)
    pairs(upper, value)
    assert pairs.pairs == [(b"ce-id", b"1"), (b"ce-id", b"1")]
    assert pairs.pairs[0][0] is lower
    assert pairs.pairs[1][1] is value
    assert upper == b"CE-Id"  # bytes are immutable: the caller's object was not lowered in place


@pytest.mark.parametrize("kind", ["python", "c"])
def test_a_protocol_holding_its_own_counter_is_collected(kind: str) -> None:
    """The counter holds the protocol's bound method, the protocol the counter: a cycle the GC must free."""
    cls = httpheaders.HeaderPairs if kind == "python" else c_class()

    class Owner:
        def __init__(self) -> None:
            self.head = cls(10, self.too_large)

        def too_large(self) -> None:
            raise TooLargeError

    owner = Owner()
    gone = weakref.ref(owner)
    del owner
    gc.collect()
    assert gone() is None


# --------------------------------------------------------------------------------------------------------------------
# Whole requests through the httptools protocol, with each implementation.
# --------------------------------------------------------------------------------------------------------------------


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Route:
    max_body = 1024
    noted_headers = (b"ce-type", b"x-missing")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.first: dict[bytes, bytes] = {}

    def begin(self, headers: list[tuple[bytes, bytes]], first: Mapping[bytes, bytes]) -> None:
        self.headers = list(headers)
        self.first = dict(first)

    def too_large(self, size: int) -> Any:
        raise AssertionError("not expected")

    def broken_off(self) -> None:
        pass

    def handle(self, headers: Any, body: bytes, reply: Callable[[Any], None]) -> None:
        from eventaudit.directroute import Answer

        reply(Answer(200, b"text/plain", b"ok"))


@pytest.fixture(params=["python", "c"])
def fields_kind(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    cls = httpheaders.HeaderPairs if request.param == "python" else c_class()
    monkeypatch.setattr(httptoolsprotocol, "header_pairs", cls)
    return request.param


def feed(request: bytes, state: ServerState | None = None) -> tuple[Route, Transport, Any]:
    route = Route()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("only the direct route is asked")

    app.state = type("State", (), {"direct_routes": {(b"POST", b"/"): route}})()  # type: ignore[attr-defined]

    async def go() -> tuple[Transport, Any]:
        config = Config(app=app, log_level="warning", access_log=False)
        config.load()
        protocol = httptoolsprotocol.ProblemHttpToolsProtocol(
            config=config, server_state=state or ServerState(), app_state={}, _loop=asyncio.get_running_loop()
        )
        transport = Transport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(request)
        await asyncio.sleep(0)
        protocol.connection_lost(None)
        return transport, protocol

    transport, protocol = asyncio.run(go())
    return route, transport, protocol


def post(*fields: bytes, target: bytes = b"/") -> bytes:
    return (
        b"POST "
        + target
        + b" HTTP/1.1\r\nHost: x\r\n"
        + b"".join(f + b"\r\n" for f in fields)
        + b"content-length: 0\r\n\r\n"
    )


def test_the_fields_reach_the_route_lower_cased(fields_kind: str) -> None:
    route, transport, _ = feed(
        post(b"CE-Type: t.one", b"X-Request-ID: abc", b"Content-Type: text/plain", b"ce-type: t.two")
    )
    assert transport.written[0].startswith(b"HTTP/1.1 200"), transport.written
    assert b"\r\nx-request-id: abc\r\n" in transport.written[0]  # the first X-Request-ID, noted as it came
    # what the route asked for, first value, nothing absent; and what the protocol notes for itself
    assert route.first == {b"ce-type": b"t.one", b"x-request-id": b"abc"}
    assert route.headers == [
        (b"host", b"x"),
        (b"ce-type", b"t.one"),
        (b"x-request-id", b"abc"),
        (b"content-type", b"text/plain"),
        (b"ce-type", b"t.two"),
        (b"content-length", b"0"),
    ]


def head_size(request: bytes) -> int:
    """What the protocol counts: the target, and per field its name, its value and 4 bytes."""
    head = request.split(b"\r\n\r\n")[0].split(b"\r\n")
    fields = [line.split(b": ", 1) for line in head[1:]]
    return len(head[0].split(b" ")[1]) + sum(len(name) + len(value) + 4 for name, value in fields)


@pytest.mark.parametrize("over", [0, 1])
def test_the_head_is_refused_one_byte_past_the_limit(fields_kind: str, over: int) -> None:
    base = post(b"X-Padding: ")
    padding = MAX_HEADER_BYTES - head_size(base) + over
    request = post(b"X-Padding: " + b"a" * padding)
    assert head_size(request) == MAX_HEADER_BYTES + over
    _, transport, _ = feed(request)
    status = transport.written[0].split(b"\r\n")[0]
    assert status == (b"HTTP/1.1 431 Request Header Fields Too Large" if over else b"HTTP/1.1 200 OK"), status


def test_the_target_counts_too(fields_kind: str) -> None:
    request = post(target=b"/?" + b"q" * MAX_HEADER_BYTES)
    _, transport, _ = feed(request)
    assert transport.written[0].startswith(b"HTTP/1.1 431"), transport.written


def test_an_answer_carries_the_servers_default_fields_of_the_moment(fields_kind: str) -> None:
    """uvicorn replaces ``default_headers`` when the date changes: the next answer has the new date."""
    state = ServerState()
    for date in (b"Fri, 27 Nov 2026 14:00:00 GMT", b"Fri, 27 Nov 2026 14:00:01 GMT"):
        state.default_headers = [(b"date", date), (b"server", b"eventaudit")]
        _, transport, _ = feed(post(), state)
        head = transport.written[0].split(b"\r\n\r\n")[0].split(b"\r\n")
        assert head[:3] == [b"HTTP/1.1 200 OK", b"date: " + date, b"server: eventaudit"], head


@pytest.mark.parametrize(
    ("fields", "status"),
    [
        ((b"Host: y",), b"400"),  # a second Host
        ((b"Transfer-Encoding: gzip",), b"400"),  # not chunked last: the length cannot be known
        ((b"Transfer-Encoding: gzip", b"transfer-encoding: chunked"), b"501"),  # both fields, joined
        ((b"Expect: 100-Continue",), b"200"),
    ],
)
def test_what_is_noted_of_the_fields_decides_as_before(
    fields_kind: str, fields: tuple[bytes, ...], status: bytes
) -> None:
    request = post(*fields).replace(b"content-length: 0\r\n", b"") if b"Transfer" in b"".join(fields) else post(*fields)
    _, transport, _ = feed(request)
    if status == b"200":  # Expect: 100-continue in any case: the 100 first, then the answer
        assert transport.written[0] == b"HTTP/1.1 100 Continue\r\n\r\n", transport.written
        transport.written.pop(0)
    assert transport.written[0].split(b" ")[1] == status, transport.written
