"""Alembic environment: runs against the connection handed in by persistence.schema."""
from __future__ import annotations

from alembic import context

from persistence.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `bin/trader db upgrade` (persistence.schema)")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
