"""The audit service's own histogram type, held to prometheus_client's ``Histogram`` as the oracle."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from eventaudit.audit.metrics import LoopHistogram

BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def _exposition(registry: CollectorRegistry) -> list[str]:
    # prometheus_client's histogram also exports a `_created` gauge; the rest must be the same text.
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]


@given(st.lists(st.integers(min_value=0, max_value=5000) | st.sampled_from(BUCKETS), max_size=60))
def test_loop_histogram_exposes_what_prometheus_client_would(values: list[int]) -> None:
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    loop_histogram = LoopHistogram("eventaudit_test_events", "Events per request.", BUCKETS, ours)
    histogram = Histogram("eventaudit_test_events", "Events per request.", buckets=BUCKETS, registry=theirs)
    for value in values:
        loop_histogram.observe(value)
        histogram.observe(value)
    assert _exposition(ours) == _exposition(theirs)


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    registry = CollectorRegistry()
    loop_histogram = LoopHistogram("eventaudit_test_events", "Events per request.", (1, 2), registry)
    loop_histogram.observe(2)
    assert registry.get_sample_value("eventaudit_test_events_bucket", {"le": "1.0"}) == 0
    assert registry.get_sample_value("eventaudit_test_events_bucket", {"le": "2.0"}) == 1
    assert registry.get_sample_value("eventaudit_test_events_count") == 1
    assert registry.get_sample_value("eventaudit_test_events_sum") == 2
