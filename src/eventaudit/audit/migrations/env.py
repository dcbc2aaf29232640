"""Alembic environment: runs on the connection that :func:`eventaudit.audit.migrate.upgrade` hands over."""

from __future__ import annotations

from alembic import context

from eventaudit.audit.models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="alembic_version_audit",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
