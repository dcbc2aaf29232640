"""Alembic migrations of the audit log's schema."""
