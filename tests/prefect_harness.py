"""Prefect's test harness, on PostgreSQL instead of SQLite.

``prefect.testing.utilities.prefect_test_harness`` runs its server on a SQLite
file. Under this suite's load (flows with parallel sub-flows, leases, a lab
fleet, on 2 cores) that server's writers queue on SQLite's single write lock:
requests stalled for 2-6 s, and once a concurrency slot request failed with
"database is locked" until its 60 s timeout ran out. Production servers run
on PostgreSQL; so do the tests. The server process, settings and teardown are
those of Prefect's harness; only the database differs.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

__all__ = ["prefect_harness_on"]


@contextmanager
def prefect_harness_on(database_url: str, *, startup_timeout_s: int = 120) -> Iterator[str]:
    """Run a Prefect API server on ``database_url`` and point this process at it.

    Args:
        database_url: A ``postgresql+asyncpg://`` URL of an empty database.
        startup_timeout_s: How long the server may take to start (migrations).

    Yields:
        The server's API URL.
    """
    import prefect.context
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.server.database.dependencies import temporary_database_interface
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_DATABASE_CONNECTION_URL,
        temporary_settings,
    )
    from prefect.utilities.asyncutils import run_coro_as_sync

    from tests.helpers import free_port

    with ExitStack() as stack:
        stack.enter_context(temporary_database_interface())
        stack.enter_context(
            temporary_settings(updates={PREFECT_SERVER_DATABASE_CONNECTION_URL: database_url})
        )
        server = SubprocessASGIServer(port=free_port())
        # Flow code that asks for "the" ephemeral server must find this one.
        prior = SubprocessASGIServer._instances.get(None)
        SubprocessASGIServer._instances[None] = server
        try:
            server.start(timeout=startup_timeout_s)
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))
            stack.enter_context(
                prefect.context._temporary_global_settings_context(
                    prefect.context.get_settings_context()
                )
            )
            yield server.api_url

            async def drain() -> None:  # logs and events first, or they hit a dead server
                try:
                    result = APILogWorker.instance().drain()
                    if inspect.isawaitable(result):
                        await result
                except RuntimeError:  # the log worker never started
                    pass
                result = EventsWorker.drain_all()
                if inspect.isawaitable(result):
                    await result

            run_coro_as_sync(drain())
        finally:
            server.stop()
            if prior is not None:
                SubprocessASGIServer._instances[None] = prior
            else:
                SubprocessASGIServer._instances.pop(None, None)
