"""JSON log lines: the cached-second timestamp and shared encoder give what the plain formula gives."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventaudit.httpserver import JSONFormatter


def plain(record: logging.LogRecord) -> str:
    """The formatter as first written: strftime per line, json.dumps(default=str)."""
    entry: dict[str, Any] = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
    }
    entry.update({k: v for k, v in vars(record).items() if k not in JSONFormatter._SKIP})
    return json.dumps(entry, default=str)


@settings(max_examples=300, deadline=None)
@given(
    created=st.floats(min_value=-(2**31), max_value=2**35, allow_nan=False),
    extra=st.dictionaries(
        st.sampled_from(["method", "path", "status", "elapsed_ms", "request_id"]),
        st.none() | st.integers() | st.floats() | st.text() | st.binary(max_size=4),
    ),
)
def test_json_lines_match_the_plain_formula(created: float, extra: dict[str, Any]) -> None:
    record = logging.getLogger("eventaudit.access").makeRecord("eventaudit.access", 20, "f", 1, "%s", ("é",), None)
    record.__dict__.update(extra)
    record.created, record.msecs = created, abs(created - int(created)) * 1000

    assert JSONFormatter().format(record) == plain(record)
