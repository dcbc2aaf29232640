"""``eventaudit verify``: walk the hash chain and name the first record that was tampered with."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eventaudit.audit import chain
from eventaudit.audit.store import AuditStore, derived_columns
from eventaudit.events import CloudEventError
from eventaudit.events.formats import json as json_format


@dataclass(frozen=True)
class Verdict:
    """What the walk found: ``problem`` is ``None`` when the whole chain holds."""

    count: int
    head_seq: int
    head_hash: bytes
    problem: str | None = None
    seq: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify(store: AuditStore, progress: Callable[[int], None] | None = None, *, chunk: int = 5000) -> Verdict:
    """Check every record: gap-free seq, hash chain, and columns that agree with the event.

    A changed record breaks its own hash (or its columns no longer match its event); a
    removed one leaves a gap in seq or a chain head that points past the end; a
    reordered pair breaks both hashes. ``progress`` is called with each chunk's size.
    """
    head_seq, head_hash = store.head()
    previous = chain.GENESIS
    expected = 1
    count = 0
    for rows in store.walk(chunk=chunk):
        for row in rows:
            problem = _check_row(row, expected, previous)
            if problem is not None:
                return Verdict(count, head_seq, head_hash, problem, row["seq"])
            previous = bytes(row["hash"])
            expected += 1
            count += 1
        if progress is not None:
            progress(len(rows))
    if count != head_seq or previous != head_hash:
        return Verdict(
            count,
            head_seq,
            head_hash,
            f"the chain head says seq {head_seq}, but the log ends at seq {count}: records after it were removed"
            if count < head_seq
            else "the chain head does not match the last record",
            count + 1 if count < head_seq else head_seq,
        )
    return Verdict(count, head_seq, head_hash)


def _check_row(row: Any, expected: int, previous: bytes) -> str | None:
    seq = row["seq"]
    if seq != expected:
        what = "removed" if seq > expected else "duplicated or reordered"
        return f"seq {expected} is missing (found {seq} next): a record was {what}"
    canonical = str(row["event"]).encode()
    if chain.link(previous, seq, int(row["recordedtime"]), canonical) != bytes(row["hash"]):
        return f"record {seq} was changed, or moved: its hash does not follow from the record before it"
    try:
        event = json_format.decode(canonical)
    except CloudEventError as exc:
        return f"record {seq} holds an event that no longer decodes: {exc}"
    for name, value in derived_columns(event).items():
        if row[name] != value:
            return f"record {seq} was changed: column {name} no longer matches its event"
    return None
