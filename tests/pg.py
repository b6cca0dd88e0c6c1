"""A real PostgreSQL server for tests, from Debian's ``postgresql`` packages.

The server itself is :class:`lab.postgres.PostgresServer` (initdb/pg_ctl in a
temporary directory, 127.0.0.1 at a free port, as the ``postgres`` user when
running as root, password never on a command line). ``postgres_server``
(session scope) starts it once; ``postgres_url`` (function scope) gives each
test a fresh database.

Use from a test module (or a conftest) with::

    from tests.pg import postgres_server, postgres_url  # noqa: F401

(``postgres_url`` alone is enough: the server lives in ``config.stash`` and
is stopped by a ``config.add_cleanup`` hook at the end of the run.)
"""

from __future__ import annotations

import secrets

import pytest

from lab.postgres import PostgresServer, find_pg_bin

__all__ = ["PostgresServer", "postgres_server", "postgres_url", "session_server"]

_SERVER = pytest.StashKey[PostgresServer]()
_FAILED = pytest.StashKey[str]()


def session_server(config: pytest.Config) -> PostgresServer:
    """Start the session's server on first use; it is stopped when pytest ends.

    Skips when the server binaries are not installed (``apt-get install
    postgresql``); fails when they are there and the server does not start.

    Args:
        config: The pytest config (``pytestconfig`` / ``request.config``).

    Returns:
        The running server.
    """
    if _SERVER in config.stash:
        return config.stash[_SERVER]
    if _FAILED in config.stash:
        pytest.fail(config.stash[_FAILED])
    if find_pg_bin() is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql)"
        )
    server = PostgresServer(durable=False)
    try:
        server.start()
    except Exception as exc:
        config.stash[_FAILED] = f"could not start PostgreSQL: {exc}"
        raise
    config.add_cleanup(server.stop)
    config.stash[_SERVER] = server
    return server


@pytest.fixture(scope="session")
def postgres_server(pytestconfig: pytest.Config) -> PostgresServer:
    """A throwaway PostgreSQL server for the test session."""
    return session_server(pytestconfig)


@pytest.fixture
def postgres_url(pytestconfig: pytest.Config) -> str:
    """A fresh, empty database on the session's server, as a SQLAlchemy URL."""
    name = f"t_{secrets.token_hex(6)}"
    return session_server(pytestconfig).create_database(name)
