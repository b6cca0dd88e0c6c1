"""A real PostgreSQL server for tests, from Debian's ``postgresql`` packages.

``postgres_server`` (session scope) runs ``initdb`` and ``pg_ctl`` from
``/usr/lib/postgresql/<version>/bin`` in a temporary directory, listening on
127.0.0.1 at a free port with its unix socket inside that directory. initdb
refuses to run as root, so as root the server runs as the ``postgres`` user
(``runuser -u postgres --``). The superuser password is random and handed to
initdb in a file, never on a command line. ``postgres_url`` (function scope)
gives each test a fresh database.

Use from a test module (or a conftest) with::

    from tests.pg import postgres_server, postgres_url  # noqa: F401

(``postgres_url`` alone is enough: the server lives in ``config.stash`` and
is stopped by a ``config.add_cleanup`` hook at the end of the run.)
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

__all__ = ["PostgresServer", "find_pg_bin", "postgres_server", "postgres_url", "session_server"]

START_TIMEOUT_S = 60


def find_pg_bin() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/<v>/bin`` holding initdb and pg_ctl."""
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        version = bindir.parent.name
        if (bindir / "pg_ctl").exists() and version.isdigit():
            candidates.append((int(version), bindir))
    return max(candidates)[1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running test server: admin URL pieces and its files."""

    host: str
    port: int
    user: str
    password: str
    root: Path

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) of one database on this server."""
        return (
            f"postgresql+psycopg://{self.user}:{self.password}@{self.host}:{self.port}/{database}"
        )

    def create_database(self, name: str) -> str:
        """Create a database and return its SQLAlchemy URL."""
        with psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname="postgres",
            autocommit=True,
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # name comes from the test, not a user
        return self.url(name)


class _Runner:
    """Runs the server's binaries as the postgres user when we are root."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.as_root = os.geteuid() == 0
        if self.as_root:
            entry = pwd.getpwnam("postgres")
            self.uid, self.gid = entry.pw_uid, entry.pw_gid

    def own(self, path: Path) -> None:
        if self.as_root:
            os.chown(path, self.uid, self.gid)

    def run(self, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run(
            [*prefix, str(self.bindir / tool), *args],
            cwd=self.root,  # the postgres user may not be able to enter our cwd
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 30,
            check=False,
        )


def _start(runner: _Runner, root: Path) -> PostgresServer:
    data, sockets = root / "data", root / "sock"
    for directory in (root, sockets):
        directory.mkdir(exist_ok=True)
        runner.own(directory)
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    runner.own(pwfile)
    init = runner.run(
        "initdb", "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}",
        "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C",
    )  # fmt: skip
    pwfile.unlink()
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
    port = _free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"\nlisten_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{sockets}'\n"
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        )
    log = root / "server.log"
    start = runner.run(
        "pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT_S), "start"
    )
    if start.returncode != 0:
        detail = log.read_text() if log.exists() else ""
        raise RuntimeError(f"pg_ctl start failed:\n{start.stdout}\n{start.stderr}\n{detail}")
    server = PostgresServer(
        host="127.0.0.1", port=port, user="postgres", password=password, root=root
    )
    _wait_ready(server)
    return server


def _wait_ready(server: PostgresServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            with psycopg.connect(
                host=server.host,
                port=server.port,
                user=server.user,
                password=server.password,
                dbname="postgres",
                connect_timeout=5,
            ):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


_SERVER = pytest.StashKey[PostgresServer]()
_FAILED = pytest.StashKey[str]()


def session_server(config: pytest.Config) -> PostgresServer:
    """Start the session's server on first use; it is stopped when pytest ends.

    Kept in ``config.stash`` (not only a session fixture) so that importing
    ``postgres_url`` alone into a conftest is enough.

    Args:
        config: The pytest config (``pytestconfig`` / ``request.config``).

    Returns:
        The running server.
    """
    if _SERVER in config.stash:
        return config.stash[_SERVER]
    if _FAILED in config.stash:
        pytest.fail(config.stash[_FAILED])
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql)"
        )
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start postgres as its user")
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="rackflow-pg-"))
    runner = _Runner(bindir, root)
    config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
    try:
        server = _start(runner, root)
    except Exception as exc:
        config.stash[_FAILED] = f"could not start PostgreSQL: {exc}"
        raise
    config.add_cleanup(
        lambda: runner.run("pg_ctl", "-D", str(root / "data"), "-m", "fast", "-w", "stop")
    )
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
