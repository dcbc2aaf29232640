"""``verify`` on SQLite and PostgreSQL: an intact log holds; every kind of tampering is found and its record named."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from eventaudit.audit import chain
from eventaudit.audit.store import AuditStore
from eventaudit.audit.verify import Verdict, verify
from eventaudit.events import CloudEvent
from tests.integration.audit.logs import event, execute, open_store

N = 10


def log_events() -> list[CloudEvent]:
    """Ten events that use every column, including times only the exact check reads."""
    return [
        event(subject="u1", time="2024-01-01T10:00:00Z", data={"n": 1}, datacontenttype="application/json"),
        event(time="2024-01-01T10:00:00+02:00", extensions={"zeta": 1, "alpha": "a"}, data={"n": 2}),
        event(type="user.updated", time="1969-12-31T23:59:59.5Z", extensions={"bin": b"\x00\x01"}),
        event(
            subject="u4",
            time="2024-01-01T04:30:00.25-05:00",
            extensions={"zeta": 1, "alpha": "a", "flag": True},
            datacontenttype="application/json",
            dataschema="https://example.com/schema",
            data={"n": 4},
        ),
        event(time="2024-01-01T10:00:00.123456789Z", datacontenttype="text/plain", data="five"),
        event(time="2024-01-01t10:00:00z", datacontenttype="application/octet-stream", data=b"\x06"),
        event(time="2016-12-31T23:59:60Z", subject="u7"),
        event(),
        event(type="user.deleted", source="/other", time="9999-12-31T23:59:59.999999Z"),
        event(subject="u10", time="2024-06-01T00:00:00Z", extensions={"partitionkey": "u10"}, data={"n": 10}),
    ]


@pytest.fixture
def store(db_url: str) -> Iterator[AuditStore]:
    with open_store(db_url) as opened:
        opened.append([log_events()[:4], log_events()[4:]])
        yield opened


def tamper(store: AuditStore, statement: str, **params: Any) -> None:
    execute(store.writer, statement, **params)


def assert_tampered(verdict: Verdict, seq: int, *words: str, intact: int | None = None) -> None:
    """``verdict`` names record ``seq``, its problem says ``words``, and ``intact`` records (default seq - 1) hold."""
    assert not verdict.ok, verdict
    assert verdict.seq == seq, verdict
    for word in words:
        assert word in (verdict.problem or ""), verdict
    assert verdict.count == (seq - 1 if intact is None else intact), verdict


def test_an_intact_log_verifies(store: AuditStore) -> None:
    verdict = verify(store)

    assert verdict.ok, verdict
    assert (verdict.count, verdict.head_seq, verdict.head_hash) == (N, *store.head())


def test_an_empty_log_verifies(db_url: str) -> None:
    with open_store(db_url) as empty:
        assert verify(empty) == Verdict(0, 0, chain.GENESIS)


def test_extensions_stored_in_another_member_order_are_not_tampering(store: AuditStore) -> None:
    reordered = '{"zeta": 1, "flag": true, "alpha": "a"}'
    tamper(store, "UPDATE audit_events SET extensions = :reordered WHERE seq = 4", reordered=reordered)

    assert verify(store).ok


@pytest.mark.parametrize("chunk", [1, 3, N, 1000])
def test_chunks_of_any_size_verify_the_same(store: AuditStore, chunk: int) -> None:
    sizes: list[int] = []

    assert verify(store, sizes.append, chunk=chunk).ok
    assert sum(sizes) == N
    assert max(sizes) == min(chunk, N)


def test_a_changed_event_text_is_found(store: AuditStore) -> None:
    tamper(store, "UPDATE audit_events SET event = replace(event, :old, :new) WHERE seq = 4", old='"n":4', new='"n":40')

    assert_tampered(verify(store), 4, "record 4 was changed", "hash")


def test_a_changed_first_record_is_found(store: AuditStore) -> None:
    tamper(store, "UPDATE audit_events SET event = replace(event, :old, :new) WHERE seq = 1", old='"n":1', new='"n":2')

    assert_tampered(verify(store), 1, "hash")


#: (seq, column, value): each a change of one filter column that leaves the event text as it was.
COLUMN_CHANGES: list[tuple[int, str, object]] = [
    (4, "type", "user.deleted"),
    (4, "source", "/elsewhere"),
    (4, "id", "forged"),
    (4, "subject", None),
    (4, "subject", "u5"),
    (8, "subject", "added"),
    (4, "time", "2024-01-01T04:30:00.26-05:00"),
    (4, "time", None),
    (4, "time_us", 1_704_101_400_250_001),
    (4, "time_us", None),
    (6, "time_us", 1_704_103_200_000_001),  # a time only the exact check reads
    (4, "datacontenttype", "text/plain"),
    (4, "dataschema", None),
    (4, "specversion", "0.3"),
    (4, "extensions", '{"alpha":"a","flag":true}'),
    (4, "extensions", '{"alpha":"a","flag":true,"zeta":true}'),
    (4, "extensions", '{"alpha":"a","flag":1,"zeta":1}'),
    (4, "extensions", "not json"),
    (2, "extensions", "{}"),
    (8, "extensions", '{"added":1}'),
]


def test_a_changed_filter_column_is_found_and_named(store: AuditStore) -> None:
    """Every row of ``COLUMN_CHANGES``, each on a fresh log (one database for the table: creating one is slow)."""
    missed = {}
    for seq, column, value in COLUMN_CHANGES:
        execute(store.writer, "DELETE FROM audit_events")
        execute(store.writer, "UPDATE audit_chain_head SET seq = 0, hash = :zero", zero=chain.GENESIS)
        store.append([log_events()])
        tamper(store, f"UPDATE audit_events SET {column} = :value WHERE seq = {seq}", value=value)

        verdict = verify(store)
        if (verdict.seq, verdict.count, verdict.problem) != (
            seq,
            seq - 1,
            f"record {seq} was changed: column {column} no longer matches its event",
        ):
            missed[f"{column} of {seq} = {value!r}"] = verdict

    assert missed == {}


def test_a_changed_recordedtime_is_found(store: AuditStore) -> None:
    tamper(store, "UPDATE audit_events SET recordedtime = recordedtime + 1 WHERE seq = 4")

    assert_tampered(verify(store), 4, "hash")


def test_a_deleted_record_in_the_middle_is_found(store: AuditStore) -> None:
    tamper(store, "DELETE FROM audit_events WHERE seq = 4")

    assert_tampered(verify(store), 4, "seq 4 is missing", "removed")


def test_a_deleted_last_record_is_found(store: AuditStore) -> None:
    tamper(store, f"DELETE FROM audit_events WHERE seq = {N}")  # the chain head is left as it was

    assert_tampered(verify(store), N, f"says seq {N}", f"ends at seq {N - 1}", "removed")


def test_a_deleted_last_record_with_the_head_seq_moved_back_is_found(store: AuditStore) -> None:
    tamper(store, f"DELETE FROM audit_events WHERE seq = {N}")
    tamper(store, f"UPDATE audit_chain_head SET seq = {N - 1}")  # but its hash is still that of record N

    assert_tampered(verify(store), N - 1, "chain head does not match", intact=N - 1)


def test_a_changed_chain_head_is_found(store: AuditStore) -> None:
    tamper(store, "UPDATE audit_chain_head SET hash = :zero", zero=bytes(32))

    assert_tampered(verify(store), N, "chain head does not match", intact=N)


def test_a_swapped_pair_is_found(store: AuditStore) -> None:
    with store.writer.begin() as conn:
        rows = {r.seq: r for r in conn.execute(text("SELECT seq, event, hash FROM audit_events WHERE seq IN (3, 6)"))}
        for seq, other in ((3, 6), (6, 3)):
            conn.execute(
                text("UPDATE audit_events SET event = :event, hash = :hash WHERE seq = :seq"),
                {"event": rows[other].event, "hash": rows[other].hash, "seq": seq},
            )

    assert_tampered(verify(store), 3, "changed, or moved")


def test_a_renumbered_record_is_found(store: AuditStore) -> None:
    tamper(store, "UPDATE audit_events SET seq = 1000 WHERE seq = 4")

    assert_tampered(verify(store), 4, "seq 4 is missing")


def test_two_records_with_swapped_seqs_are_found(store: AuditStore) -> None:
    tamper(store, "UPDATE audit_events SET seq = -3 WHERE seq = 3")
    tamper(store, "UPDATE audit_events SET seq = 3 WHERE seq = 4")
    tamper(store, "UPDATE audit_events SET seq = 4 WHERE seq = -3")

    assert_tampered(verify(store), 3, "changed, or moved")


def test_a_changed_record_with_its_own_hash_recomputed_is_found_at_the_next(store: AuditStore) -> None:
    rewrite_chain(store, from_seq=4, to_seq=4, edit=lambda event_text: event_text.replace('"n":4', '"n":40'))

    assert_tampered(verify(store), 5, "record 5 was changed, or moved")


def test_an_event_that_no_longer_decodes_is_found_even_in_a_rewritten_chain(store: AuditStore) -> None:
    rewrite_chain(store, from_seq=4, to_seq=N, edit=lambda event_text: event_text.replace('"specversion":"1.0"', ""))

    assert_tampered(verify(store), 4, "no longer decodes")


def test_a_record_appended_past_the_chain_head_is_found(store: AuditStore) -> None:
    head_seq, head_hash = store.head()
    with store.writer.begin() as conn:
        row = conn.execute(text("SELECT * FROM audit_events WHERE seq = :seq"), {"seq": head_seq}).mappings().one()
        forged = dict(row, seq=head_seq + 1, id="forged")
        forged["event"] = row["event"].replace(f'"id":"{row["id"]}"', '"id":"forged"')
        forged["hash"] = chain.link(head_hash, head_seq + 1, row["recordedtime"], forged["event"].encode())
        conn.execute(text(f"INSERT INTO audit_events ({', '.join(forged)}) VALUES (:{', :'.join(forged)})"), forged)

    assert_tampered(verify(store), N + 1, "after the chain head")


def rewrite_chain(store: AuditStore, *, from_seq: int, to_seq: int, edit: Any) -> None:
    """Change the event of ``from_seq`` with ``edit`` and recompute the hashes from it up to ``to_seq``.

    Up to the head, this is what someone who knows the chain's construction can do; the check of
    the event itself still holds the line.
    """
    with store.writer.begin() as conn:
        previous = conn.execute(text("SELECT hash FROM audit_events WHERE seq = :s"), {"s": from_seq - 1}).scalar_one()
        rows = conn.execute(
            text("SELECT seq, recordedtime, event FROM audit_events WHERE seq BETWEEN :a AND :b ORDER BY seq"),
            {"a": from_seq, "b": to_seq},
        ).all()
        for row in rows:
            event_text = edit(row.event) if row.seq == from_seq else row.event
            previous = chain.link(bytes(previous), row.seq, row.recordedtime, event_text.encode())
            conn.execute(
                text("UPDATE audit_events SET event = :e, hash = :h WHERE seq = :s"),
                {"e": event_text, "h": previous, "s": row.seq},
            )
        if to_seq == N:
            conn.execute(text("UPDATE audit_chain_head SET hash = :h"), {"h": previous})


def test_a_value_of_another_storage_class_in_a_sqlite_column_is_found(sqlite_url: str) -> None:
    with open_store(sqlite_url) as store:
        store.append([log_events()])
        tamper(store, "UPDATE audit_events SET type = CAST(type AS BLOB) WHERE seq = 4")  # type = '…' misses it now
        assert_tampered(verify(store), 4, "column type ")

        tamper(store, "UPDATE audit_events SET type = CAST(type AS TEXT) WHERE seq = 4")
        assert verify(store).ok
        tamper(store, "UPDATE audit_events SET recordedtime = 'soon' WHERE seq = 6")
        assert_tampered(verify(store), 6, "hash")


def test_events_appended_during_the_walk_are_not_mistaken_for_tampering(store: AuditStore) -> None:
    appended: list[list[int | None]] = []

    def append_meanwhile(_size: int) -> None:
        if not appended:
            appended.extend(store.append([[event(), event()]]))

    verdict = verify(store, append_meanwhile, chunk=3)

    assert appended == [[N + 1, N + 2]]
    assert verdict.ok, verdict
    assert (verdict.count, verdict.head_seq) == (N, N)
    assert verify(store).count == N + 2


def test_verify_walks_20000_records_in_chunks(db_url: str) -> None:
    with open_store(db_url) as store:
        for start in range(0, 20_000, 2_000):
            store.append([[event(subject=str(n), data={"n": n}) for n in range(start, start + 2_000)]])
        sizes: list[int] = []

        verdict = verify(store, sizes.append, chunk=1_000)

        assert verdict.ok, verdict
        assert verdict.count == 20_000
        assert sizes == [1_000] * 20
        tamper(store, "UPDATE audit_events SET subject = 'x' WHERE seq = 15001")  # first of its chunk
        assert_tampered(verify(store, chunk=1_000), 15_001, "column subject ")
        tamper(store, "UPDATE audit_events SET subject = '15000' WHERE seq = 15001")
        tamper(store, "DELETE FROM audit_events WHERE seq = 12000")  # last of its chunk
        assert_tampered(verify(store, chunk=1_000), 12_000, "seq 12000 is missing")
