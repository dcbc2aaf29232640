"""Users -> outbox -> relay -> Kafka -> audit consumer -> log, with a real broker (Tansu), SQLite and PostgreSQL.

The write-up's conclusion: the users service does not know the audit service; both know a topic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from eventaudit.broker import DevBroker
from tests.integration.audit.conftest import new_database, wait_until
from tests.integration.users.conftest import SECRET, UsersServer, assert_per_user_order, start_users
from tests.kafka.conftest import KafkaAudit, kafka_audit, new_topic, read_all

pytestmark = pytest.mark.kafka

SOURCE = "/eventaudit/users"


@pytest.fixture
def users_db(db_url: str) -> str:
    return db_url


@pytest.fixture
def audit_db(db_url: str, tmp_path: Path) -> Iterator[str]:
    """The audit service's own database, of the same kind as the users'."""
    kind = "sqlite" if db_url.startswith("sqlite") else "postgres"
    with new_database(kind, tmp_path) as url:
        yield url


def _users(db: str, bootstrap: str, topic: str, mode: str = "binary") -> AbstractContextManager[UsersServer]:
    return start_users(db, relay=True, sink=f"kafka://{bootstrap}/{topic}", sink_mode=mode, relay_poll=0.05)


def _changes(users: UsersServer, count: int) -> list[str]:
    """Create ``count`` users, rename every other one, delete every third; their ids."""
    ids = [users.create(name=f"user {i}", password=SECRET)["id"] for i in range(count)]
    for user_id in ids[::2]:
        users.patch(user_id, name="renamed")
    for user_id in ids[::3]:
        assert users.client.delete(f"/v1/users/{user_id}").status_code == 204
    return ids


def _expected(ids: list[str]) -> int:
    return len(ids) + len(ids[::2]) + len(ids[::3])


def _stored(audit: KafkaAudit, count: int, timeout: float = 60) -> list[dict[str, object]]:
    def enough() -> list[dict[str, object]] | None:
        items = audit.server.items(source=SOURCE)
        return items if len(items) >= count else None

    items: list[dict[str, object]] = wait_until(enough, timeout, f"{count} user events in the audit log")
    return items


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_every_user_change_reaches_the_log_through_kafka_once_and_in_order(
    broker: DevBroker, users_db: str, audit_db: str, mode: str
) -> None:
    topic = new_topic(broker.bootstrap)
    kind = "sqlite" if audit_db.startswith("sqlite") else "postgres"
    with (
        kafka_audit(audit_db, kind, broker.bootstrap, topic) as audit,
        _users(users_db, broker.bootstrap, topic, mode) as users,
    ):
        audit.wait_assigned()
        ids = _changes(users, 30)
        items = _stored(audit, _expected(ids))
        assert len(items) == _expected(ids)
        assert_per_user_order(items)  # type: ignore[arg-type]
        assert {item["event"]["subject"] for item in items} == set(ids)  # type: ignore[index]
        assert SECRET not in str(items)
        wait_until(lambda: not [r for r in users.outbox_rows() if r["sent_at"] is None], 20, "the outbox drained")
        assert users.metric("eventaudit_relay_sent_events_total") == _expected(ids)
        assert audit.server.metric("eventaudit_ingested_events_total", transport="kafka") == _expected(ids)


def test_records_on_the_topic_decode_with_the_official_sdk_and_are_keyed_by_user(
    broker: DevBroker, users_db: str
) -> None:
    """Produce: key = partitionkey = user id (partitioning extension); ce_ headers + content-type (§3.2)."""
    topic = new_topic(broker.bootstrap)
    with _users(users_db, broker.bootstrap, topic) as users:
        ids = _changes(users, 6)
        wait_until(lambda: not [r for r in users.outbox_rows() if r["sent_at"] is None], 30, "the outbox drained")
    records = read_all(broker.bootstrap, topic, _expected(ids))
    fmt = JSONFormat()
    seen: dict[str, list[int]] = {}
    for record in records:
        headers = {name: value or b"" for name, value in record.headers() or []}
        assert headers["content-type"] == b"application/json"
        event = sdk_kafka.from_binary(
            sdk_kafka.KafkaMessage(headers=headers, key=record.key(), value=record.value() or b""), fmt
        )
        attributes = event.get_attributes()
        assert record.key() == attributes["subject"].encode() == attributes["partitionkey"].encode()
        assert attributes["source"] == SOURCE
        assert attributes["type"] in ("user.created", "user.updated", "user.deleted")
        assert "password" not in (event.get_data() or {})
        seen.setdefault(attributes["subject"], []).append(int(attributes["sequence"]))
    # one user's records are in one partition, in order
    assert set(seen) == set(ids)
    for sequences in seen.values():
        assert sequences == list(range(1, len(sequences) + 1))


def test_changes_made_while_the_broker_is_down_reach_the_log_once_it_is_back(
    own_broker: DevBroker, users_db: str, audit_db: str
) -> None:
    """The outbox holds what the broker did not acknowledge.

    Tansu keeps messages in memory, so this tests our send side.
    """
    topic = new_topic(own_broker.bootstrap)
    kind = "sqlite" if audit_db.startswith("sqlite") else "postgres"
    with (
        kafka_audit(audit_db, kind, own_broker.bootstrap, topic) as audit,
        start_users(
            users_db,
            relay=True,
            sink=f"kafka://{own_broker.bootstrap}/{topic}",
            relay_poll=0.05,
            relay_timeout=2.0,
            retry_max=1.0,
        ) as users,
    ):
        audit.wait_assigned()
        before = _changes(users, 5)
        _stored(audit, _expected(before))  # caught up
        own_broker.stop()
        during = [users.create(name=f"while down {i}", password=SECRET)["id"] for i in range(20)]  # all 201
        wait_until(lambda: users.metric("eventaudit_outbox_backlog_events") >= 1, 20, "the outbox to hold them")
        own_broker.start()
        # the broker lost everything (memory storage): topics and the group start again
        new_topic_again(own_broker.bootstrap, topic)
        items = _stored(audit, _expected(before), timeout=90)
        ids = {item["event"]["subject"] for item in items}  # type: ignore[index]

        def all_arrived() -> bool:
            got = {item["event"]["subject"] for item in audit.server.items(source=SOURCE)}  # type: ignore[index]
            return set(during) <= got

        wait_until(all_arrived, 90, "every user created while the broker was down in the log")
        items = audit.server.items(source=SOURCE)
        assert len(items) == _expected(before) + len(during)
        assert_per_user_order(items)
        assert ids <= {item["event"]["subject"] for item in items}


def new_topic_again(bootstrap: str, topic: str) -> None:
    """Recreate ``topic`` (3 partitions) and its DLQ on a broker that forgot them."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 3), NewTopic(topic + ".dlq", 1)], operation_timeout=10).values():
        with contextlib.suppress(KafkaException):  # made already by our producer or consumer
            future.result(10)
