"""Alembic's entry point: runs the revisions on the connection `ensure_schema` hands over.

Run from the `alembic` command line instead (a developer writing a revision), it connects to the
`sqlalchemy.url` of the configuration itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from runtime.store.schema import metadata

config = context.config


def run_on(connection: Connection) -> None:
    # SQLite alters a table by copying it: batch mode does that for every ALTER it cannot run.
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_on(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url", ""))
    with engine.begin() as own_connection:
        run_on(own_connection)


if context.is_offline_mode():
    run_offline()
else:
    run_online()
