"""Alembic environment: always run on a connection handed over by `llm_manager.db.migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from llm_manager.db import tables  # noqa: F401  (registers every table on Base.metadata)
from llm_manager.db.base import Base


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `llm-manager init` (llm_manager.db.migrate)")
run_migrations(connection)
