"""Alembic environment: migrations run on the connection genfactory hands over."""

from __future__ import annotations

from alembic import context

from genfactory.storage.models import Base

config = context.config
target_metadata = Base.metadata

connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only for `alembic revision --autogenerate` by hand
    from genfactory.storage.db import create_store_engine, database_url

    engine = create_store_engine(database_url())
    with engine.begin() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True
        )
        context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    context.run_migrations()
