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
def prefect_harness():
    """One Prefect test server per session, heartbeats off (they cost ~1 s per flow)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        with prefect_test_harness(server_startup_timeout=120):
            yield


@pytest.fixture()
def unique_password() -> str:
    """A password no other string in the run can contain by chance."""
    return "pw-" + secrets.token_hex(12)
