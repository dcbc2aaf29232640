"""Bring the audit schema up to date (run on start, or ``eventaudit audit --migrate``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

_SCRIPTS = Path(__file__).resolve().parent / "migrations"
#: Serializes migrations of one PostgreSQL database (any constant both sides agree on; "audit" in ASCII).
_ADVISORY_LOCK = 0x6175646974


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply every migration the database does not have yet; safe to run repeatedly, and from several processes.

    Concurrent upgrades queue: on PostgreSQL for an advisory lock, on SQLite for the write lock
    (``BEGIN IMMEDIATE``), so the second one finds the schema done instead of failing half-way.
    ``revision`` stops earlier than the newest (tests of a migration start from the one before).
    """
    _run(engine, command.upgrade, revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo the migrations after ``revision``, under the same lock as :func:`upgrade`."""
    _run(engine, command.downgrade, revision)


def _run(engine: Engine, step: Callable[[Config, str], None], revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with engine.connect() as connection:
        connection.execution_options(eventaudit_sqlite_begin="BEGIN IMMEDIATE")
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
            config.attributes["connection"] = connection
            step(config, revision)
