"""Alembic environment: runs on the connection that :func:`eventaudit.users.migrate.upgrade` hands over."""

from __future__ import annotations

from alembic import context

from eventaudit.users.models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table="alembic_version_users",
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
