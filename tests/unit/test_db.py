"""Database URLs and engines: drivers, folders, refusals that name the problem, redaction, SQLite settings."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from eventaudit import db


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    """Engines a test creates, disposed after it."""
    created: list[Engine] = []
    yield created
    for engine in created:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("postgresql://u@h:5432/d", "postgresql+psycopg://u@h:5432/d"),
        ("postgres://u:pw@h/d?sslmode=require", "postgresql+psycopg://u:pw@h/d?sslmode=require"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_normalize_url_picks_the_driver(url: str, normalized: str) -> None:
    assert db.normalize_url(url) == normalized


def test_normalize_url_creates_the_folders_of_a_sqlite_file(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    url = f"sqlite:///{folder / 'audit.db'}?timeout=5"

    assert db.normalize_url(url) == url
    assert folder.is_dir()
    assert not (folder / "audit.db").exists()


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("mysql://u:secret@h/d", "mysql://u:***@h/d"),
        ("postgresql+psycopg2://u@h/d", "postgresql+psycopg2"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///", "names no file"),
        ("audit.db", "audit.db"),
        ("", "unsupported"),
    ],
)
def test_unsupported_urls_raise_naming_the_problem(url: str, named: str) -> None:
    with pytest.raises(db.DatabaseURLError) as caught:
        db.normalize_url(url)

    message = str(caught.value)
    assert named in message
    assert "sqlite:///" in message  # says what would work
    assert "secret" not in message


def test_create_refuses_an_unsupported_url() -> None:
    with pytest.raises(db.DatabaseURLError, match="unsupported"):
        db.create("oracle://scott:tiger@h/d")


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user:p@ss@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:secret@host/db?sslmode=require", "postgresql://user:***@host/db?sslmode=require"),
        ("postgresql://host/db?sslmode=require&password=secret", "postgresql://host/db?sslmode=require&password=***"),
        ("postgresql://host/db?PASSWORD=secret&x=1", "postgresql://host/db?PASSWORD=***&x=1"),
        ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='se cret'", "host=h password=***"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:////var/lib/with@sign/audit.db", "sqlite:////var/lib/with@sign/audit.db"),
        ("sqlite:///data/audit.db", "sqlite:///data/audit.db"),
    ],
)
def test_redact_hides_passwords_only(url: str, redacted: str) -> None:
    assert db.redact(url) == redacted


def _pragma(engine: Engine, name: str) -> object:
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"PRAGMA {name}").scalar_one()


@pytest.mark.parametrize("writer", [True, False])
def test_sqlite_engines_are_wal_and_synchronous_full(tmp_path: Path, engines: list[Engine], writer: bool) -> None:
    engine = db.create(f"sqlite:///{tmp_path / 'x.db'}", writer=writer)
    engines.append(engine)

    assert db.is_sqlite(engine)
    assert _pragma(engine, "journal_mode") == "wal"
    assert _pragma(engine, "synchronous") == 2  # FULL
    assert _pragma(engine, "busy_timeout") == 30000
    assert _pragma(engine, "foreign_keys") == 1


def _can_take_write_lock(path: Path) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return False
    else:
        other.execute("ROLLBACK")
        return True
    finally:
        other.close()


@pytest.mark.parametrize(("writer", "locks"), [(True, True), (False, False)])
def test_a_writer_transaction_takes_the_write_lock_when_it_begins(
    tmp_path: Path, engines: list[Engine], writer: bool, locks: bool
) -> None:
    path = tmp_path / "x.db"
    engine = db.create(f"sqlite:///{path}", writer=writer)
    engines.append(engine)
    with engine.begin() as conn:
        conn.execute(text("SELECT 1"))
        assert _can_take_write_lock(path) is not locks
    assert _can_take_write_lock(path)


def test_a_read_snapshot_on_a_writer_engine_takes_no_write_lock(tmp_path: Path, engines: list[Engine]) -> None:
    path = tmp_path / "x.db"
    engine = db.create(f"sqlite:///{path}", writer=True)
    engines.append(engine)
    with engine.connect() as conn, db.read_snapshot(conn).begin():
        conn.execute(text("SELECT 1"))
        assert _can_take_write_lock(path)
    with engine.begin() as conn:  # the option does not outlive that connection's checkout
        conn.execute(text("SELECT 1"))
        assert not _can_take_write_lock(path)


def test_an_in_memory_database_lives_as_long_as_its_engine(engines: list[Engine]) -> None:
    engine = db.create("sqlite:///:memory:", writer=True)
    engines.append(engine)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar_one() == 1


def test_postgres_engines_use_psycopg() -> None:
    engine = db.create("postgresql://u@127.0.0.1:1/d")  # no connection is made
    try:
        assert engine.dialect.name == "postgresql"
        assert engine.dialect.driver == "psycopg"
        assert not db.is_sqlite(engine)
    finally:
        engine.dispose()


def test_relaxed_durability_skips_the_fsync_of_sqlite_commits_only_on_that_engine(
    tmp_path: Path, engines: list[Engine]
) -> None:
    relay = db.create(f"sqlite:///{tmp_path / 'x.db'}", writer=True)
    users = db.create(f"sqlite:///{tmp_path / 'x.db'}", writer=True)
    engines += [relay, users]
    db.relax_durability(relay)
    assert _pragma(relay, "synchronous") == 1  # NORMAL: in WAL mode, consistent; a process crash loses nothing
    assert _pragma(relay, "journal_mode") == "wal"
    assert _pragma(users, "synchronous") == 2  # the users' own writes stay FULL
