"""The audit service's Prometheus metrics, on a registry of their own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.batch_events = Histogram(
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
