"""End-to-end fixtures: the databases of the integration suite (SQLite and a fresh PostgreSQL database)."""

from tests.integration.conftest import db_url, pg_url, sqlite_url

__all__ = ["db_url", "pg_url", "sqlite_url"]
