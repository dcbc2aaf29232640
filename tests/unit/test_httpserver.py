"""JSON log lines: the cached-second timestamp and shared encoder give what the plain formula gives.

Also ``--cpu-scheduling`` where SCHED_BATCH is missing or refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventaudit import httpserver
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


# --cpu-scheduling: a platform without SCHED_BATCH, and a kernel that refuses it, are faked (the
# machine the tests run on has SCHED_BATCH and lets any process take it; tests/e2e checks that).


def test_inherit_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_setscheduler", _never, raising=False)
    assert httpserver.set_cpu_scheduling("inherit") is True


def test_batch_without_sched_batch_says_so_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delattr(os, "SCHED_BATCH", raising=False)
    monkeypatch.setattr(os, "sched_setscheduler", _never, raising=False)
    caplog.set_level(logging.INFO, logger="eventaudit.httpserver")
    assert httpserver.set_cpu_scheduling("batch") is False
    assert "no SCHED_BATCH" in caplog.text


def test_batch_refused_is_logged_with_what_was_changed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[int] = []

    def refuse_the_second(tid: int, policy: int, param: object) -> None:
        calls.append(tid)
        if len(calls) == 2:
            raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse_the_second)
    monkeypatch.setattr(os, "listdir", lambda _path: ["11", "12", "13"])
    assert httpserver.set_cpu_scheduling("batch") is False
    assert calls == [11, 12]
    assert "1 of 3 threads changed" in caplog.text


def _never(*_args: object) -> None:
    raise AssertionError("the scheduling was changed")
