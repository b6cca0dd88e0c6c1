"""Alembic environment of the inventory, usable from the installed package.

No ``alembic.ini`` is needed: :func:`clients.inventory.migrate.upgrade_to_head`
builds the configuration in code and hands over an open connection (already
inside a transaction that serializes concurrent migrators). Given only a
``sqlalchemy.url`` main option, this module connects by itself; in offline
mode (``--sql``) it prints the DDL for a DBA instead.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from clients.errors import PreconditionError
from clients.inventory.schema import VERSION_TABLE, Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things; batch mode copies tables.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        render_as_batch=True,
        compare_type=True,
    )


def run_offline() -> None:
    """Emit the migration SQL without a database connection."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Run the migrations on the shared connection, or on one of our own."""
    shared = config.attributes.get("connection")
    if isinstance(shared, Connection):
        _configure(shared)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise PreconditionError(
            subject="inventory migrations", reason="no connection and no sqlalchemy.url given"
        )
    engine = create_engine(url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure(connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
