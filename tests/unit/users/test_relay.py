"""The relay's retry delays: exponential with jitter, capped, and the sink's Retry-After when it gives one."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine

from eventaudit.transport import Delivered
from eventaudit.users.relay import Relay, RelayOptions


class _NoSender:
    async def send(self, events: object) -> Delivered:
        raise AssertionError("nothing is sent in these tests")

    async def close(self) -> None:
        return None


@pytest.fixture
def relay() -> Relay:
    return Relay(create_engine("sqlite://"), _NoSender(), RelayOptions(retry_base=0.2, retry_max=10.0))


@pytest.mark.parametrize(
    ("attempts", "low", "high"),
    [(1, 0.1, 0.2), (2, 0.2, 0.4), (3, 0.4, 0.8), (6, 3.2, 6.4), (7, 5.0, 10.0), (50, 5.0, 10.0), (10_000, 5.0, 10.0)],
)
def test_backoff_doubles_with_jitter_up_to_the_cap(relay: Relay, attempts: int, low: float, high: float) -> None:
    delays = {relay.backoff(attempts) for _ in range(200)}
    assert all(low <= delay <= high for delay in delays), (min(delays), max(delays))
    assert len(delays) > 1, "no jitter"


@pytest.mark.parametrize(("after", "expected"), [(0.0, 0.0), (2.0, 2.0), (30.0, 30.0), (10**9, 3600.0), (-5.0, 0.0)])
def test_retry_after_wins_over_the_backoff(relay: Relay, after: float, expected: float) -> None:
    assert relay.backoff(5, after) == expected
