"""The users service's and the relay's Prometheus metrics, on a registry of their own per app."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class UsersMetrics:
    """What the API and the relay update; ``registry`` is what ``/metrics`` serves."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.changes = Counter(
            "eventaudit_users_changes", "Committed user changes, by event type.", ["type"], registry=r
        )
        self.hash_seconds = Histogram(
            "eventaudit_users_password_hash_seconds",
            "Time to hash one password (argon2id).",
            buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=r,
        )
        self.backlog = Gauge("eventaudit_outbox_backlog_events", "Outbox events not delivered yet.", registry=r)
        self.lag = Gauge(
            "eventaudit_outbox_lag_seconds", "Age of the oldest undelivered outbox event (0 when none).", registry=r
        )
        self.parked = Gauge(
            "eventaudit_outbox_parked_events", "Outbox events the sink rejected, set aside (dead letter).", registry=r
        )
        self.sent = Counter("eventaudit_relay_sent_events", "Events the sink acknowledged.", registry=r)
        self.retries = Counter(
            "eventaudit_relay_retries", "Sends to try again later, by reason.", ["reason"], registry=r
        )
        self.parkings = Counter("eventaudit_relay_parked", "Events parked because the sink rejected them.", registry=r)
        self.delivery_seconds = Histogram(
            "eventaudit_relay_delivery_seconds",
            "From the commit of a change to the sink's acknowledgement of its event.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=r,
        )
