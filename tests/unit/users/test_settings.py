"""The users service's settings: what the relay does by default for each kind of sink."""

from __future__ import annotations

import pytest

from eventaudit.users.settings import HTTP_RELAY_BATCH, KAFKA_RELAY_BATCH, SettingsError, UsersSettings


@pytest.mark.parametrize(
    ("sink", "batch"),
    [("http://127.0.0.1:8080/", HTTP_RELAY_BATCH), ("kafka://127.0.0.1:9092/audit", KAFKA_RELAY_BATCH)],
)
def test_the_relay_batch_defaults_by_sink(sink: str, batch: int) -> None:
    assert UsersSettings(sink=sink).batch == batch


@pytest.mark.parametrize("sink", ["http://127.0.0.1:8080/", "kafka://127.0.0.1:9092/audit"])
def test_a_relay_batch_given_wins(sink: str) -> None:
    assert UsersSettings(sink=sink, relay_batch=7).batch == 7


def test_an_http_batch_of_the_default_size_fits_the_audit_services_default_body_limit() -> None:
    assert HTTP_RELAY_BATCH * 1024 < 1024 * 1024  # 1 KB events, 1 MiB --max-body


def test_a_relay_batch_below_one_is_refused() -> None:
    with pytest.raises(SettingsError, match="relay-batch must be at least 1"):
        UsersSettings(relay_batch=0).check()
