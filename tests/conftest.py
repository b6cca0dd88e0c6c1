"""Shared fixtures: an isolated Prefect home and harness, the lab, blocks.

PREFECT_HOME and RACKFLOW_HOME point at a temporary directory before Prefect
is imported (the harness does not isolate them, PREFECT.md).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="rackflow-tests-"))
os.environ["PREFECT_HOME"] = str(_HOME / "prefect")
os.environ["RACKFLOW_HOME"] = str(_HOME / "rackflow")
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"

import pytest  # noqa: E402

from tests.pg import postgres_url  # noqa: E402,F401 - session fixture re-exported


@pytest.fixture(scope="session")
def rackflow_home() -> Path:
    return _HOME


@pytest.fixture(scope="session")
def prefect_harness(pytestconfig: pytest.Config):
    """One Prefect test server per session, heartbeats off (they cost ~1 s per flow).

    On PostgreSQL (tests/prefect_harness.py says why); on Prefect's SQLite
    harness only where the PostgreSQL server packages are missing.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    from lab.postgres import find_pg_bin
    from tests.pg import session_server
    from tests.prefect_harness import prefect_harness_on

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        if find_pg_bin() is None:
            with prefect_test_harness(server_startup_timeout=120):
                yield
            return
        url = session_server(pytestconfig).create_database("prefect_tests", driver="asyncpg")
        with prefect_harness_on(url):
            yield


@pytest.fixture()
def unique_password() -> str:
    """A password no other string in the run can contain by chance."""
    return "pw-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def real_prefect_server(tmp_path_factory):
    """A real ``prefect server start`` (not ephemeral): it runs the services, e.g. the
    Repossessor that frees the concurrency leases of killed holders."""
    import subprocess
    import sys
    import time
    import urllib.request

    from tests.helpers import free_port

    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = dict(
        os.environ,
        PREFECT_HOME=str(home),
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_SERVICES_REPOSSESSOR_LOOP_SECONDS="2",
    )
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    prefect = Path(sys.executable).with_name("prefect")
    proc = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1):  # noqa: S310 - loopback
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((home / "server.log").read_text()[-2000:]) from None
            time.sleep(0.3)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture()
async def env_factory(prefect_harness, tmp_path):
    """Build firmware test environments (lab + repository + vcsim + inventory)."""
    from contextlib import ExitStack

    from tests.fw_env import build_env

    with ExitStack() as stack:
        counter = iter(range(100))

        async def make(**kw):
            return await build_env(stack, tmp_path / f"env{next(counter)}", **kw)

        yield make
