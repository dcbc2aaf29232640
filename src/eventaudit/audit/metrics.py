"""The audit service's Prometheus metrics, on a registry of their own per app."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector


class AuditMetrics:
    """Counters and histograms the service updates; ``registry`` is what ``/metrics`` serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ingested = Counter(
            "eventaudit_ingested_events", "Events stored in the audit log.", ["transport"], registry=r
        )
        self.duplicates = Counter(
            "eventaudit_duplicate_events",
            "Events not stored again: their (source, id) was stored.",
            ["transport"],
            registry=r,
        )
        self.rejected = Counter("eventaudit_rejected_requests", "Requests refused, by reason.", ["reason"], registry=r)
        self.commit_seconds = Histogram(
            "eventaudit_commit_seconds",
            "Time to store one group of events durably.",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.group_events = Histogram(
            "eventaudit_commit_group_events",
            "Events per commit (group commit).",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
            registry=r,
        )
        self.batch_events = LoopHistogram(
            "eventaudit_request_batch_events",
            "Events per ingest request.",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
            registry=r,
        )
        self.queue_depth = Gauge("eventaudit_commit_queue_requests", "Requests waiting for a commit.", registry=r)
        self.last_seq = Gauge("eventaudit_last_seq", "Seq of the newest stored event.", registry=r)
        # The Kafka consumer (when --kafka-bootstrap is given).
        self.kafka_records = Counter(
            "eventaudit_kafka_records", "Kafka records read, by what became of them.", ["outcome"], registry=r
        )
        self.kafka_dlq = Counter(
            "eventaudit_kafka_dlq_records", "Records sent to the dead-letter topic, by reason.", ["reason"], registry=r
        )
        self.kafka_lag = Gauge(
            "eventaudit_kafka_consumer_lag",
            "Records behind the end of each assigned partition (from librdkafka's statistics; a broker that "
            "reports the high watermark as the last batch's base offset, like Tansu 0.6, makes it up to a "
            "batch too low).",
            ["topic", "partition"],
            registry=r,
        )
        self.kafka_assigned = Gauge(
            "eventaudit_kafka_assigned_partitions", "Partitions this consumer holds.", registry=r
        )
        self.kafka_retries = Counter(
            "eventaudit_kafka_store_retries", "Batches tried again because the database was unavailable.", registry=r
        )


class LoopHistogram(Collector):
    """A Prometheus histogram observed from one thread only (the event loop's): plain counts, no locks.

    ``prometheus_client.Histogram.observe`` takes a lock per bucket and for the sum, ~1 µs, once per
    ingest request; this is a list index and two additions. ``/metrics`` reads the counts from any
    thread: each is a whole int, and a scrape during an observation may see it counted in the bucket
    and not yet in the sum, as with prometheus_client's own histogram. Exposed the same way (``_bucket``
    with cumulative ``le`` labels, ``_count``, ``_sum``).
    """

    def __init__(self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._bounds = tuple(sorted(buckets))
        self._counts = [0] * (len(self._bounds) + 1)  # the last one: above every bound (+Inf)
        self._sum = 0.0
        registry.register(self)

    def observe(self, value: float) -> None:
        """Count ``value``; call it from one thread only."""
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def collect(self) -> Iterator[Metric]:
        counts = list(self._counts)
        cumulative, total = [], 0
        for bound, count in zip((*self._bounds, float("inf")), counts, strict=True):
            total += count
            cumulative.append((_bound_label(bound), total))
        yield HistogramMetricFamily(self._name, self._documentation, buckets=cumulative, sum_value=self._sum)


def _bound_label(bound: float) -> str:
    """An ``le`` label as prometheus_client writes it (``1.0``, ``+Inf``)."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
