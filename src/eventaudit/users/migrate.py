"""Bring the users schema up to date (run on start, or ``eventaudit users --migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

_SCRIPTS = Path(__file__).resolve().parent / "migrations"


def upgrade(engine: Engine) -> None:
    """Apply every migration the database does not have yet; safe to run repeatedly."""
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
