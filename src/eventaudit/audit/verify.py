"""``eventaudit verify``: walk the hash chain and name the first record that was tampered with.

Each record is checked in two steps. Its hash must follow from the record before it, which
proves its ``seq``, ``recordedtime`` and ``event`` text are what :meth:`AuditStore.append`
chained; that text was the canonical form of an event valid when stored, so it is not
validated again, only parsed. Then the filter columns must agree with it. The fast check
compares them with the parsed event; only a record it cannot vouch for (a column that
differs, extensions stored in another member order by an older version, an unusual
``time``) goes through the exact check, which decodes the event as the ingest path does
and names the column that disagrees.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec

from eventaudit.audit import chain
from eventaudit.audit.store import WALK_COLUMNS, AuditStore, derived_columns, extensions_text, micros
from eventaudit.events import CloudEventError
from eventaudit.events.formats import json as json_format

_decoder = msgspec.json.Decoder()
_sorted_encoder = msgspec.json.Encoder(order="sorted")
#: An RFC 3339 time that ``datetime.fromisoformat`` reads exactly as ``CloudEvent.timestamp`` does.
_PLAIN_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-5][0-9](\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})"
)
_NO_EXTENSIONS: Final = "{}"
_fromisoformat = datetime.fromisoformat
_BROKEN_LINK = (AttributeError, TypeError, struct.error)
_ODD_EVENT = (msgspec.DecodeError, AttributeError, TypeError, ValueError)


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


def verify(store: AuditStore, progress: Callable[[int], None] | None = None, *, chunk: int = 10_000) -> Verdict:
    """Check every record: gap-free seq, hash chain, and columns that agree with the event.

    A changed record breaks its own hash (or its columns no longer match its event); a
    removed one leaves a gap in seq or a chain head that points past the end; a
    reordered pair breaks both hashes. The log is read as one snapshot, so events
    appended meanwhile are neither checked nor mistaken for tampering. ``progress`` is
    called with each chunk's size.
    """
    with store.walk(chunk=chunk) as log:
        walker = _Walker()
        for rows in log.chunks:
            found = walker.check(rows)
            if found is not None:
                return Verdict(walker.count, log.head_seq, log.head_hash, *found)
            if progress is not None:
                progress(len(rows))
    return _check_head(walker.count, walker.previous, log.head_seq, log.head_hash)


class _Walker:
    """The walk so far: how many records hold, and the hash of the last one."""

    def __init__(self) -> None:
        self.count = 0
        self.previous = chain.GENESIS

    def check(self, rows: list[tuple[Any, ...]]) -> tuple[str, int] | None:
        """The first problem in ``rows`` and the seq it concerns; ``None`` when all of them hold."""
        link, decode, agree = chain.link, _decoder.decode, _columns_agree
        expected, previous = self.count + 1, self.previous
        try:
            for row in rows:
                seq, recordedtime, digest, text = row[0], row[1], row[2], row[3]
                if seq != expected:
                    what = "removed" if isinstance(seq, int) and seq > expected else "renumbered"
                    return f"seq {expected} is missing (found {seq!r} next): a record was {what}", expected
                try:
                    canonical = text.encode()
                    linked = link(previous, seq, recordedtime, canonical) == digest
                except _BROKEN_LINK:
                    linked = False
                if not linked:
                    return (
                        f"record {seq} was changed, or moved: its hash does not follow from the record before it",
                        seq,
                    )
                try:
                    agreed = agree(row, decode(canonical))
                except _ODD_EVENT:  # only a chain recomputed around an altered event gets here
                    agreed = False
                if not agreed:
                    problem = _column_problem(row, canonical)
                    if problem is not None:
                        return problem, seq
                previous = digest
                expected += 1
        finally:
            self.count, self.previous = expected - 1, previous
        return None


def _columns_agree(row: tuple[Any, ...], event: dict[str, Any]) -> bool:
    """Whether every filter column of ``row`` is what ``derived_columns`` makes of ``event`` (emptied on the way).

    ``True`` is certain; ``False`` means "let the exact check decide".
    """
    pop = event.pop
    time = pop("time", None)
    if (
        row[4] != pop("specversion", None)
        or row[5] != pop("id", None)
        or row[6] != pop("source", None)
        or row[7] != pop("type", None)
        or row[8] != pop("subject", None)
        or row[9] != time
        or row[11] != pop("datacontenttype", None)
        or row[12] != pop("dataschema", None)
    ):
        return False
    time_us = row[10]
    if time is None:
        if time_us is not None:
            return False
    elif type(time_us) is not int or _PLAIN_TIME.fullmatch(time) is None or time_us != micros(_fromisoformat(time)):
        return False
    pop("data", None)
    pop("data_base64", None)
    return bool(row[13] == (extensions_text(event) if event else _NO_EXTENSIONS))  # what is left: the extensions


def _column_problem(row: tuple[Any, ...], canonical: bytes) -> str | None:
    """What is wrong with the filter columns of ``row``, decoding its event as the ingest path does."""
    seq = row[0]
    try:
        event = json_format.decode(canonical)
    except CloudEventError as exc:
        return f"record {seq} holds an event that no longer decodes: {exc}"
    expected = derived_columns(event)
    for index, name in enumerate(WALK_COLUMNS[4:], start=4):
        value, wanted = row[index], expected[name]
        same = _same_json(value, wanted) if name == "extensions" else type(value) is type(wanted) and value == wanted
        if not same:
            return f"record {seq} was changed: column {name} no longer matches its event"
    return None


def _same_json(stored: object, wanted: str) -> bool:
    """Whether the stored ``extensions`` text is the JSON object ``wanted``, in any member order."""
    if type(stored) is not str:
        return False
    if stored == wanted:
        return True
    try:
        return bool(_sorted_encoder.encode(_decoder.decode(stored)).decode() == wanted)
    except (msgspec.DecodeError, UnicodeEncodeError):
        return False


def _check_head(count: int, last_hash: bytes, head_seq: int, head_hash: bytes) -> Verdict:
    if count < head_seq:
        problem = f"the chain head says seq {head_seq}, but the log ends at seq {count}: records after it were removed"
        return Verdict(count, head_seq, head_hash, problem, count + 1)
    if count > head_seq:
        problem = f"records after the chain head (seq {head_seq}) were added outside the log's append"
        return Verdict(head_seq, head_seq, head_hash, problem, head_seq + 1)
    if last_hash != head_hash:
        return Verdict(count, head_seq, head_hash, f"the chain head does not match record {count}", count)
    return Verdict(count, head_seq, head_hash)
