"""The access line written directly (no LogRecord) is the line ``logging`` writes, and is written only where
``logging`` would write it alone."""

from __future__ import annotations

import io
import logging
import string
import time
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventaudit import accesslog, httpserver


@contextmanager
def json_lines_to(stream: io.StringIO) -> Iterator[logging.Handler]:
    """``configure_logging`` at INFO in JSON lines, writing to ``stream``; everything put back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, accesslog.direct_writer)
    with mock.patch("sys.stderr", stream):
        httpserver.configure_logging("info", json_lines=True)
    try:
        yield root.handlers[0]
    finally:
        root.handlers[:], accesslog.direct_writer = saved[0], saved[2]
        root.setLevel(saved[1])


def line(method: str, path: str, status: int, request_id: str, *, direct: bool) -> str:
    """The access line of one request, through the direct writer or through ``logging``, at a fixed time."""
    out = io.StringIO()
    with json_lines_to(out), mock.patch.object(time, "time", return_value=1_764_201_600.123_456):
        if not direct:
            accesslog.direct_writer = None
        with mock.patch.object(time, "perf_counter", return_value=10.5):
            accesslog._log_access(method, path, status, 10.25, request_id)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "OPTIONS", "PATCH"]),
    path=st.text(max_size=30),
    status=st.integers(100, 599),
    request_id=st.text(alphabet=string.hexdigits + "-", min_size=1, max_size=40),
)
def test_the_direct_line_is_the_logging_line(method: str, path: str, status: int, request_id: str) -> None:
    direct = line(method, path, status, request_id, direct=True)
    assert direct == line(method, path, status, request_id, direct=False)
    assert direct.endswith("\n")
    assert direct.count("\n") == 1


def test_another_handler_gets_the_line_through_logging(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    with json_lines_to(out):
        logging.getLogger().addHandler(caplog.handler)  # as a test's capture, or an operator's second handler
        accesslog._log_access("POST", "/", 200, time.perf_counter(), "r-1")
    assert [r.getMessage() for r in caplog.records if r.name == "eventaudit.access"] == ["POST / 200"]
    assert '"request_id": "r-1"' in out.getvalue()  # and the JSON handler still has it, once
    assert out.getvalue().count("\n") == 1


def test_a_filter_on_the_access_logger_is_obeyed() -> None:
    out = io.StringIO()
    access = logging.getLogger("eventaudit.access")
    drop_health = logging.Filter()
    drop_health.filter = lambda record: "/healthz" not in record.getMessage()  # type: ignore[method-assign]
    access.addFilter(drop_health)
    try:
        with json_lines_to(out):
            accesslog._log_access("GET", "/healthz", 200, time.perf_counter(), "r-2")
            accesslog._log_access("POST", "/", 200, time.perf_counter(), "r-3")
    finally:
        access.removeFilter(drop_health)
    assert "r-2" not in out.getvalue()
    assert "r-3" in out.getvalue()


def test_readable_text_on_a_terminal_goes_through_logging() -> None:
    with mock.patch("sys.stderr", io.StringIO()):
        saved = (logging.getLogger().handlers[:], logging.getLogger().level)
        try:
            httpserver.configure_logging("info", json_lines=False)
            assert accesslog.direct_writer is None
        finally:
            logging.getLogger().handlers[:] = saved[0]
            logging.getLogger().setLevel(saved[1])


def test_a_handler_given_another_formatter_formats_the_line_itself() -> None:
    out = io.StringIO()
    with json_lines_to(out) as handler:
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        accesslog._log_access("POST", "/", 201, time.perf_counter(), "r-4")
    assert out.getvalue() == "INFO POST / 201\n"
