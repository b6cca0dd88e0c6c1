"""Database URLs and engines for the inventory (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)
from sqlalchemy.pool import StaticPool

from clients.errors import BusyError, PreconditionError, ServerError, TransportError

__all__ = [
    "db_errors",
    "default_inventory_url",
    "make_engine",
    "normalize_url",
    "redacted",
    "sqlite_path",
]

# SQLite waits this long for another writer (another worker) before failing.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def default_inventory_url() -> str:
    """Return the default inventory URL: a SQLite file in the rackflow home.

    The home is ``$RACKFLOW_HOME`` when set, else ``~/.rackflow``. Nothing is
    created here; :meth:`Inventory.open` creates the directory.

    Returns:
        A ``sqlite:///<home>/inventory.db`` URL.
    """
    home = os.environ.get("RACKFLOW_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".rackflow"
    return f"sqlite:///{(base / 'inventory.db').absolute()}"


def normalize_url(url: str) -> URL:
    """Parse a database URL and pick the drivers rackflow ships.

    ``postgresql://`` and ``postgres://`` become ``postgresql+psycopg://``
    (psycopg 3; psycopg2 is not installed).

    Args:
        url: A SQLAlchemy database URL.

    Returns:
        The parsed URL.

    Raises:
        PreconditionError: The URL cannot be parsed or names an unsupported backend.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise PreconditionError(
            subject="inventory url", reason=f"not a database URL: {exc}"
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise PreconditionError(
            subject="inventory url",
            reason=f"unsupported backend {parsed.get_backend_name()!r}: use sqlite or postgresql",
        )
    return parsed


def redacted(url: URL | str) -> str:
    """Render a URL for messages and logs, password hidden.

    Args:
        url: A URL object or string.

    Returns:
        The URL with ``***`` for the password.
    """
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<unparseable url>"
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: URL) -> Path | None:
    """Return the database file of a SQLite URL, None for in-memory or other backends."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database))


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit
    # transactions defer locking and then fail with "database is locked" on
    # upgrade when two workers write).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        mode = str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if mode not in ("wal", "memory"):
            _enable_wal(cursor)
    finally:
        cursor.close()


def _enable_wal(cursor: Any) -> None:
    # WAL lets readers work while a worker writes. Switching needs a moment
    # alone with the file, and SQLite answers "locked" at once (busy_timeout
    # does not apply) when another connection is switching it too.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _sqlite_on_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: read-then-write transactions of
    # concurrent workers queue on busy_timeout instead of deadlocking.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: URL) -> Engine:
    """Create the engine for an inventory URL (no connection is made yet).

    Args:
        url: A URL from :func:`normalize_url`.

    Returns:
        A SQLAlchemy engine with per-backend settings (SQLite pragmas and
        write locking; PostgreSQL pre-ping for long-lived workers).
    """
    if url.get_backend_name() == "sqlite":
        kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
        if sqlite_path(url) is None:
            # One shared connection, or every checkout would see a new empty database.
            kwargs["poolclass"] = StaticPool
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def db_errors(target: str) -> Iterator[None]:
    """Translate SQLAlchemy errors into rackflow's error tree.

    Args:
        target: Redacted URL naming the database in messages.

    Yields:
        Nothing; the body runs inside the translation.

    Raises:
        TransportError: Connection failed or the database stayed locked (retryable).
        BusyError: A concurrent writer claimed the same row (retryable: a re-run updates).
        ServerError: Any other database failure.
    """
    try:
        yield
    except IntegrityError as exc:
        raise BusyError(
            status=409, code="IntegrityError", message=str(exc.orig), target=target
        ) from exc
    except (OperationalError, InterfaceError) as exc:
        raise TransportError(target=target, reason=str(exc.orig).strip()) from exc
    except DBAPIError as exc:
        raise ServerError(
            status=500, code=type(exc.orig).__name__, message=str(exc.orig), target=target
        ) from exc
    except SQLAlchemyError as exc:
        raise ServerError(
            status=500, code=type(exc).__name__, message=str(exc), target=target
        ) from exc
