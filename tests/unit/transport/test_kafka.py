"""The Kafka transport's pure parts: sink URLs, librdkafka options, and what a delivery report means.

``KafkaSender`` itself, against a real broker, is in tests/kafka/test_sender.py.
"""

from __future__ import annotations

import argparse

import pytest
from confluent_kafka import KafkaError

from eventaudit import argtypes
from eventaudit.transport import Delivered, Rejected, RetryLater
from eventaudit.transport.kafka import (
    DEFAULT_TOPIC,
    KafkaTarget,
    KafkaURLError,
    check_bootstrap,
    check_options,
    outcome_of,
    parse_url,
)
from eventaudit.transport.sinks import check_sink, is_kafka

GOOD_URLS = {
    "kafka://broker:9092/audit": KafkaTarget("broker:9092", "audit"),
    "kafka://127.0.0.1:19092/events.v1": KafkaTarget("127.0.0.1:19092", "events.v1"),
    "kafka://b1:9092,b2:9093,b3:9094/t": KafkaTarget("b1:9092,b2:9093,b3:9094", "t"),
    "kafka://b1:9092, b2:9093/t": KafkaTarget("b1:9092,b2:9093", "t"),
    "kafka://[::1]:9092/t": KafkaTarget("[::1]:9092", "t"),
    "kafka://broker:9092": KafkaTarget("broker:9092", DEFAULT_TOPIC),
    "kafka://broker:9092/": KafkaTarget("broker:9092", DEFAULT_TOPIC),
    "kafka://broker:9092/My_Topic-2": KafkaTarget("broker:9092", "My_Topic-2"),
    "kafka://broker:65535/" + "t" * 249: KafkaTarget("broker:65535", "t" * 249),
}


@pytest.mark.parametrize("url", GOOD_URLS)
def test_parse_url_reads_brokers_and_topic(url: str) -> None:
    assert parse_url(url) == GOOD_URLS[url]


def test_the_default_topic_is_audit() -> None:
    assert DEFAULT_TOPIC == "audit"
    assert parse_url("kafka://h:1").topic == "audit"


BAD_URLS = {
    "no host": "kafka://:9092/audit",
    "no brokers at all": "kafka:///audit",
    "no port": "kafka://broker/audit",
    "empty port": "kafka://broker:/audit",
    "port not a number": "kafka://broker:http/audit",
    "port 0": "kafka://broker:0/audit",
    "port too large": "kafka://broker:65536/audit",
    "one of several brokers has no port": "kafka://b1:9092,b2/audit",
    "an empty broker in the list": "kafka://b1:9092,/audit",
    "credentials in the URL": "kafka://user:secret@broker:9092/audit",
    "topic with a space": "kafka://broker:9092/my topic",
    "topic with a slash": "kafka://broker:9092/a/b",
    "topic '..'": "kafka://broker:9092/..",
    "topic '.'": "kafka://broker:9092/.",
    "topic with a colon": "kafka://broker:9092/a:b",
    "topic of 250 characters": "kafka://broker:9092/" + "t" * 250,
    "query string": "kafka://broker:9092/audit?acks=all",
    "fragment": "kafka://broker:9092/audit#x",
    "an empty query string": "kafka://broker:9092/audit?",
    "another scheme": "http://broker:9092/audit",
    "no scheme": "broker:9092/audit",
    "empty": "",
}


@pytest.mark.parametrize("name", BAD_URLS)
def test_parse_url_refuses(name: str) -> None:
    with pytest.raises(KafkaURLError):
        parse_url(BAD_URLS[name])


def test_a_refusal_names_what_is_wrong() -> None:
    with pytest.raises(KafkaURLError, match="HOST:PORT"):
        parse_url("kafka://broker/audit")
    with pytest.raises(KafkaURLError, match="'my topic' is not a Kafka topic name"):
        parse_url("kafka://broker:9092/my topic")
    with pytest.raises(KafkaURLError, match="acks=all"):
        parse_url("kafka://broker:9092/audit?acks=all")


def test_a_kafka_url_error_is_a_value_error() -> None:
    """So that callers that check any sink (check_sink) catch one kind of error."""
    assert issubclass(KafkaURLError, ValueError)


@pytest.mark.parametrize(
    ("bootstrap", "expected"), [("h:1", "h:1"), ("h:1, g:2", "h:1,g:2"), (" 10.0.0.1:9092 ", "10.0.0.1:9092")]
)
def test_check_bootstrap_tidies(bootstrap: str, expected: str) -> None:
    assert check_bootstrap(bootstrap) == expected


@pytest.mark.parametrize("bootstrap", ["", "h", "h:", ":1", "h:1,", "h:1,g", "h:99999"])
def test_check_bootstrap_refuses(bootstrap: str) -> None:
    with pytest.raises(KafkaURLError):
        check_bootstrap(bootstrap)


# --- options ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("security.protocol=SASL_SSL", ("security.protocol", "SASL_SSL")),
        ("sasl.password=p=w d", ("sasl.password", "p=w d")),
        (" sasl.mechanism=PLAIN", ("sasl.mechanism", "PLAIN")),
    ],
)
def test_the_kafka_option_argument(text: str, expected: tuple[str, str]) -> None:
    assert argtypes.kafka_option(text) == expected


@pytest.mark.parametrize("text", ["acks", "=all", "two words=1", ""])
def test_the_kafka_option_argument_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
        argtypes.kafka_option(text)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"acks": "all", "linger.ms": "20"},
        {
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "relay",
            "sasl.password": "secret",
        },
        {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "p"},
    ],
)
def test_check_options_accepts_librdkafka_settings(options: dict[str, str]) -> None:
    check_options(options)


def test_check_options_names_an_unknown_setting() -> None:
    with pytest.raises(ValueError, match=r"No such configuration property: \"no\.such\.setting\""):
        check_options({"acks": "all", "no.such.setting": "1"})


def test_check_options_refuses_a_bad_value() -> None:
    # librdkafka names the setting by its canonical name (acks is an alias of request.required.acks)
    with pytest.raises(ValueError, match=r"Invalid value .*acks"):
        check_options({"acks": "sometimes"})


# --- delivery reports ------------------------------------------------------------------------


def test_no_error_is_delivered() -> None:
    assert isinstance(outcome_of(None), Delivered)


@pytest.mark.parametrize(
    "code",
    [
        KafkaError.MSG_SIZE_TOO_LARGE,
        KafkaError.INVALID_RECORD,
        KafkaError.INVALID_MSG,
        KafkaError.INVALID_MSG_SIZE,
        KafkaError.RECORD_LIST_TOO_LARGE,
    ],
)
def test_an_error_about_the_record_itself_is_rejected(code: int) -> None:
    outcome = outcome_of(KafkaError(code))
    assert isinstance(outcome, Rejected)
    assert outcome.reason.startswith(f"Kafka {KafkaError(code).name()}: ")


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._QUEUE_FULL,
        KafkaError._TIMED_OUT,
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.BROKER_NOT_AVAILABLE,
    ],
)
def test_any_other_error_is_retried_later(code: int) -> None:
    outcome = outcome_of(KafkaError(code))
    assert isinstance(outcome, RetryLater)
    assert outcome.after is None
    assert outcome.reason == f"Kafka {KafkaError(code).name()}: {KafkaError(code).str()}"


# --- sinks -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sink", "kafka"),
    [("kafka://h:1/t", True), ("http://h:1/", False), ("https://audit.example.com/", False), ("kafka:/x", False)],
)
def test_is_kafka(sink: str, kafka: bool) -> None:
    assert is_kafka(sink) is kafka


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_check_sink_accepts_kafka_in_binary_and_structured(mode: str) -> None:
    check_sink("kafka://h:9092/audit", mode)  # type: ignore[arg-type]
    check_sink("kafka://b1:9092,b2:9092", mode)  # type: ignore[arg-type]


def test_check_sink_refuses_kafka_with_the_batch_mode() -> None:
    with pytest.raises(ValueError, match="Kafka has no batch content mode"):
        check_sink("kafka://h:9092/audit", "batch")


def test_check_sink_refuses_a_bad_kafka_url() -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        check_sink("kafka://h/audit", "binary")


@pytest.mark.parametrize("mode", ["binary", "structured", "batch"])
def test_check_sink_still_accepts_http_in_every_mode(mode: str) -> None:
    check_sink("http://127.0.0.1:8080/", mode)  # type: ignore[arg-type]
