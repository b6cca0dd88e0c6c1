"""Apply the inventory's Alembic migrations programmatically (no alembic.ini).

The migrations ship inside the package (``clients/inventory/migrations``) and
:func:`upgrade_to_head` runs them on every :meth:`Inventory.open`; at head it
is a no-op. Concurrent openers (several workers on one PostgreSQL database,
or on one SQLite file) are serialized: PostgreSQL by a transaction-scoped
advisory lock, SQLite by ``BEGIN IMMEDIATE``.

To add a schema change, edit ``schema.py`` and generate a revision::

    from alembic import command
    from clients.inventory.migrate import alembic_config
    command.revision(alembic_config("sqlite:////tmp/x.db"), message="add foo",
                     autogenerate=True)

(after upgrading ``/tmp/x.db`` to head), then review the generated file.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from clients.inventory.schema import VERSION_TABLE

__all__ = [
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "head_revision",
    "upgrade_to_head",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# pg_advisory_xact_lock key: "rackflow inventory migrations" (any constant bigint).
_PG_LOCK_KEY = 0x7261636B666C6F77


def alembic_config(url: str | None = None) -> Config:
    """Build an Alembic configuration pointing at the packaged migrations.

    Args:
        url: Database URL for commands that connect by themselves (revision,
            offline ``--sql``); not needed when a connection is shared.

    Returns:
        An Alembic ``Config`` with no ini file behind it.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a literal % must be doubled.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """Return the newest revision shipped in the package."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """Return the revision the database is at (None when never migrated).

    Args:
        connection: An open connection to the inventory database.

    Returns:
        The revision id, or None.
    """
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Upgrade the database behind ``engine`` to the newest revision.

    Runs in one transaction holding a lock, so two processes opening a fresh
    database at once do not both create the tables.

    Args:
        engine: Engine from :func:`clients.inventory.engine.make_engine`.
    """
    with engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
        if current_revision(connection) == head_revision():
            return
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
