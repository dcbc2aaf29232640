"""The relay with a pipelined sender (Kafka): one outcome per event, folded user by user in order.

A real broker cannot be made to fail one record and take the next, so the sender here is a test
double that answers from a script. What must hold (relay.py, ``_fold``): a user's events are marked
sent only in order; the first RetryLater of a user keeps that user's later events pending (untried)
whatever the sink said about them; a Rejected event is parked and the user's next events go on;
other users are not held up by anyone's retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import create_engine

from eventaudit.events import CloudEvent
from eventaudit.events.formats import json as json_format
from eventaudit.transport import Delivered, Outcome, PipelinedSender, Rejected, RetryLater
from eventaudit.users.relay import Relay, RelayOptions, _fold, _Outcomes
from eventaudit.users.repository import OutboxRow

D = Delivered("ok")
R = RetryLater("Kafka _MSG_TIMED_OUT: Local: Message timed out")
X = Rejected("Kafka MSG_SIZE_TOO_LARGE: Broker: Message size too large")


def _row(position: int, user: str, sequence: int) -> OutboxRow:
    event = CloudEvent.create(
        type="user.updated",
        source="/users",
        id=f"{user}{sequence}",
        subject=user,
        data={"n": sequence},
        extensions={"partitionkey": user},
    )
    return OutboxRow(position, user, sequence, json_format.encode(event).decode(), 0, 0)


def _rows(users: str) -> list[OutboxRow]:
    """Outbox rows in position order; ``"abab"`` is a1, b1, a2, b2."""
    seen: dict[str, int] = {}
    rows = []
    for position, user in enumerate(users, start=1):
        seen[user] = seen.get(user, 0) + 1
        rows.append(_row(position, user, seen[user]))
    return rows


def _fold_rows(rows: list[OutboxRow], results: Sequence[Outcome]) -> _Outcomes:
    outcomes = _Outcomes()
    _fold([(row, json_format.decode(row.event)) for row in rows], results, outcomes)
    return outcomes


def _names(rows: list[OutboxRow]) -> list[str]:
    return [f"{row.user_id}{row.sequence}" for row in rows]


def _summary(outcomes: _Outcomes) -> dict[str, list[str]]:
    return {
        "sent": _names(outcomes.sent),
        "parked": _names([row for row, _ in outcomes.parked]),
        "retry": _names([row for row, _ in outcomes.retry]),
        "untried": _names(outcomes.untried),
    }


CASES: dict[str, tuple[str, list[Outcome], dict[str, list[str]]]] = {
    "all delivered": ("aab", [D, D, D], {"sent": ["a1", "a2", "b1"], "parked": [], "retry": [], "untried": []}),
    "the delivered prefix is sent, the rest waits behind the retry": (
        "aaaaa",
        [D, D, R, D, D],
        {"sent": ["a1", "a2"], "parked": [], "retry": ["a3"], "untried": ["a4", "a5"]},
    ),
    "a retry of the first event holds every later one, even those the broker took": (
        "aaa",
        [R, D, D],
        {"sent": [], "parked": [], "retry": ["a1"], "untried": ["a2", "a3"]},
    ),
    "a retry holds only its own user": (
        "abacbc",
        [D, R, D, D, D, D],
        {"sent": ["a1", "a2", "c1", "c2"], "parked": [], "retry": ["b1"], "untried": ["b2"]},
    ),
    "after a retry, a later retry or rejection of that user is untried, not counted": (
        "aaab",
        [R, R, X, D],
        {"sent": ["b1"], "parked": [], "retry": ["a1"], "untried": ["a2", "a3"]},
    ),
    "a rejected event is parked and its user goes on": (
        "aaaa",
        [X, D, X, D],
        {"sent": ["a2", "a4"], "parked": ["a1", "a3"], "retry": [], "untried": []},
    ),
    "parked, then a retry, then untried": (
        "aaab",
        [X, R, D, X],
        {"sent": [], "parked": ["a1", "b1"], "retry": ["a2"], "untried": ["a3"]},
    ),
    "each user retried once, at its own first failure": (
        "abab",
        [D, D, R, R],
        {"sent": ["a1", "b1"], "parked": [], "retry": ["a2", "b2"], "untried": []},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_fold(name: str) -> None:
    users, results, expected = CASES[name]
    assert _summary(_fold_rows(_rows(users), results)) == expected


def test_fold_keeps_the_reasons_the_sender_gave() -> None:
    retry = RetryLater("Kafka _TRANSPORT: Local: Broker transport failure", after=3.0)
    outcomes = _fold_rows(_rows("ab"), [X, retry])
    assert outcomes.parked[0][1] == X.reason
    assert outcomes.retry[0][1] is retry


def test_fold_refuses_a_sender_that_answers_for_fewer_events() -> None:
    with pytest.raises(ValueError, match="shorter"):
        _fold_rows(_rows("aa"), [D])


def _model(rows: list[OutboxRow], results: Sequence[Outcome]) -> dict[str, list[str]]:
    """What the relay promises, written out plainly, user by user."""
    expected: dict[str, list[str]] = {"sent": [], "parked": [], "retry": [], "untried": []}
    blocked: set[str] = set()
    for row, outcome in zip(rows, results, strict=True):
        name = f"{row.user_id}{row.sequence}"
        if row.user_id in blocked:
            expected["untried"].append(name)
        elif isinstance(outcome, Delivered):
            expected["sent"].append(name)
        elif isinstance(outcome, Rejected):
            expected["parked"].append(name)
        else:
            expected["retry"].append(name)
            blocked.add(row.user_id)
    return expected


@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from([D, R, X])), max_size=40))
def test_fold_against_a_model(script: list[tuple[str, Outcome]]) -> None:
    rows = _rows("".join(user for user, _ in script))
    results = [outcome for _, outcome in script]
    folded = _summary(_fold_rows(rows, results))
    assert folded == _model(rows, results)
    every = sorted(name for names in folded.values() for name in names)
    assert every == sorted(_names(rows)), "every event lands in exactly one place"
    for user in "abcd":
        mine = [r for r in rows if r.user_id == user]
        done = {f"{user}{r.sequence}" for r in mine} & set(folded["sent"] + folded["parked"])
        sequences = sorted(int(name[1:]) for name in done)
        assert sequences == list(range(1, len(sequences) + 1)), "only a prefix of a user's events is settled"
        assert len([n for n in folded["retry"] if n.startswith(user)]) <= 1


# --- the relay routes a pipelined sender to send_each -----------------------------------------


class InMemoryPipelinedSender:
    """Answers ``send_each`` from ``script`` (event id -> outcome; Delivered otherwise) and records each call."""

    def __init__(self, script: dict[str, Outcome] | None = None) -> None:
        self.script = script or {}
        self.calls: list[list[str]] = []

    async def send(self, events: Sequence[CloudEvent]) -> Outcome:
        raise AssertionError("a pipelined sender is asked for one outcome per event")

    async def send_each(self, events: Sequence[CloudEvent]) -> list[Outcome]:
        self.calls.append([event.id for event in events])
        return [self.script.get(event.id, D) for event in events]

    async def close(self) -> None:
        return None


def test_the_double_is_a_pipelined_sender() -> None:
    assert isinstance(InMemoryPipelinedSender(), PipelinedSender)


async def _send(sender: InMemoryPipelinedSender, rows: list[OutboxRow], batch_mode: bool = False) -> _Outcomes:
    relay = Relay(create_engine("sqlite://"), sender, RelayOptions(batch_mode=batch_mode))
    return await relay._send(rows)


@pytest.mark.parametrize("batch_mode", [False, True])
def test_the_relay_sends_every_claimed_event_in_one_pipelined_call(batch_mode: bool) -> None:
    sender = InMemoryPipelinedSender({"b1": R, "a3": X})
    rows = _rows("aabab" + "c")
    outcomes = asyncio.run(_send(sender, rows, batch_mode))
    assert sender.calls == [["a1", "a2", "b1", "a3", "b2", "c1"]], "one call, in outbox order, users side by side"
    assert _summary(outcomes) == {"sent": ["a1", "a2", "c1"], "parked": ["a3"], "retry": ["b1"], "untried": ["b2"]}


def test_an_event_that_cannot_be_decoded_is_parked_and_the_rest_are_sent() -> None:
    sender = InMemoryPipelinedSender()
    rows = _rows("aab")
    rows[1] = OutboxRow(rows[1].position, "a", 2, '{"specversion": "1.0"}', 0, 0)
    outcomes = asyncio.run(_send(sender, rows))
    assert sender.calls == [["a1", "b1"]]
    assert _names(outcomes.sent) == ["a1", "b1"]
    [(parked, reason)] = outcomes.parked
    assert parked is rows[1]
    assert "cannot be decoded" in reason
